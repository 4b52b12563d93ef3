"""From coordinates to a loaded transformers model, on the planted models of every architecture
(GPT-2's Conv1D included): the coordinates a registry records for a directory are found by its
content hash, located in `model.state_dict()`, and zeroing the located weight reproduces the
ablation perplexity swreg measured; keeping it around a quantizer puts it back exactly."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from registry import migrate
from registry.database import make_engine, make_sessionmaker, transaction
from registry.index import service as index_service
from registry.superweights import service
from swreg import Index, InvalidInput, coordinates_for, keep, keeping, locate, read, restore
from tests.helpers import TINY_EVAL_TOKENS
from workers.fixtures.planted import SUPPORTED_MODEL_TYPES
from workers.science.checkpoint import open_checkpoint
from workers.science.context import model_context
from workers.science.evaluation import Scoring, stop_word_ids
from workers.science.pipeline.steps import AnalysisOptions, evaluation_windows
from workers.science.quantization import ClipRule, clip_threshold, quantize_rtn
from workers.sources.pinning import hash_local_weights, local_revision

# The full model and the streamed sweep compute the same thing in a different order (tests
# of the naive path agree to this tolerance too).
SAME_PERPLEXITY = 1e-4


@pytest.fixture(scope="module")
def index(planted_reports, tmp_path_factory):
    """model_type -> an index file exported from a registry in which that planted model's
    analysis is recorded at the content revision of its directory (built on first use)."""
    built: dict[str, Index] = {}

    def get(model_type: str) -> Index:
        if model_type not in built:
            planted, report = planted_reports(model_type)
            root = tmp_path_factory.mktemp(f"registry-{model_type}")
            url = f"sqlite:///{root / 'swreg.db'}"
            migrate.upgrade(url)
            engine = make_engine(url)
            try:
                with transaction(make_sessionmaker(engine)) as session:
                    service.record_report(
                        session,
                        model_id=f"planted/{model_type}",
                        revision=local_revision(hash_local_weights(planted.path)),
                        revision_kind="content",
                        report=report,
                    )
                    document = index_service.export_document(session)
            finally:
                engine.dispose()
            path = root / "index.json"
            path.write_text(index_service.dumps(document))
            built[model_type] = Index.load(path)
        return built[model_type]

    return get


def _load(planted):
    feed_forward = open_checkpoint(planted.path).feed_forward
    model = AutoModelForCausalLM.from_pretrained(
        planted.path, dtype=torch.float32, attn_implementation=feed_forward.attention
    )
    return model.eval()


class Perplexity:
    """Perplexity of a loaded model on the evaluation windows the analysis scored."""

    def __init__(self, planted):
        tokenizer = AutoTokenizer.from_pretrained(planted.path)
        options = AnalysisOptions(eval_tokens=TINY_EVAL_TOKENS)
        _, self.windows = evaluation_windows(tokenizer, options, model_context(planted.config))
        self.stop_ids = stop_word_ids(tokenizer)

    @torch.inference_mode()
    def __call__(self, model, tokens: int | None = None) -> float:
        """On the first windows that hold `tokens` predictions (the ones a sequential analysis
        scored; all of them by default)."""
        scoring = Scoring(self.stop_ids)
        for w, window in enumerate(self.windows):
            if (
                tokens is not None
                and scoring.baseline.windows
                and scoring.baseline.tokens >= tokens
            ):
                break
            scoring.add_baseline(w, model(input_ids=window).logits, window)
        assert tokens is None or scoring.baseline.tokens == tokens
        return scoring.baseline.perplexity


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_zeroing_the_located_weight_reproduces_the_ablation(model_type, planted_reports, index):
    planted, report = planted_reports(model_type)
    feed_forward = open_checkpoint(planted.path).feed_forward
    coordinates = coordinates_for(planted.path, index=index(model_type), states=("verified",))
    assert coordinates.model_id == f"planted/{model_type}"
    assert {(c.layer, c.row, c.col) for c in coordinates} == {
        (p.layer, p.row, p.col) for p in planted.plants
    }

    model = _load(planted)
    weights = locate(model, coordinates)
    state = model.state_dict()
    for weight, coordinate in zip(weights, coordinates, strict=True):
        site = feed_forward.dense_site(coordinate.layer)
        assert weight.parameter == feed_forward.parameter(coordinate.layer, site)
        assert weight.transposed == (model_type == "gpt2")
        assert weight.index == (
            (weight.col, weight.row) if weight.transposed else (weight.row, weight.col)
        )
        assert float(state[weight.parameter][weight.index]) == coordinate.value

    perplexity = Perplexity(planted)
    evidence = {
        (sw["tensor"], tuple(sw["index"])): sw["evidence"]["validation"]
        for sw in report["super_weights"]
    }
    for weight in weights:
        validation = evidence[(weight.tensor, weight.index)]
        # The analysis stops a clear verdict early: compare on the tokens it scored.
        baseline = perplexity(model, validation["baseline"]["tokens"])
        assert baseline == pytest.approx(validation["baseline"]["perplexity"], rel=SAME_PERPLEXITY)
        with keeping(model, [weight]):
            with torch.no_grad():
                state[weight.parameter][weight.index] = 0.0
            assert read(model, [weight]) == [0.0]
            ablated = perplexity(model, validation["ablated"]["tokens"])
        assert ablated == pytest.approx(validation["ablated"]["perplexity"], rel=SAME_PERPLEXITY)
        assert ablated > 2 * baseline  # the verdict's rule: this is what made it "verified"
        assert read(model, [weight]) == [weight.value]  # put back exactly


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_keeping_the_super_weights_around_a_quantizer(model_type, planted_reports, index):
    """The paper's recipe with a caller's own quantizer: clip and quantize every weight of the
    down projections in place, with the located super weights kept and restored."""
    planted, _ = planted_reports(model_type)
    feed_forward = open_checkpoint(planted.path).feed_forward
    model = _load(planted)
    weights = locate(model, coordinates_for(planted.path, index=index(model_type)))
    perplexity = Perplexity(planted)
    baseline = perplexity(model)
    originals = {name: p.detach().clone() for name, p in model.named_parameters()}

    def clip_and_quantize() -> None:
        with torch.no_grad():
            for layer in range(model.config.num_hidden_layers):
                site = feed_forward.dense_site(layer)
                parameter = model.get_parameter(feed_forward.parameter(layer, site))
                out_in = site.out_in(parameter)
                out_in.copy_(quantize_rtn(out_in, 4, 64, clip_threshold(out_in, ClipRule())))

    clip_and_quantize()
    clipped = perplexity(model)
    for name, parameter in model.named_parameters():  # start again from the original weights
        parameter.data.copy_(originals[name])
    with keeping(model, weights) as kept:
        clip_and_quantize()
        assert read(model, weights) != [w.value for w in weights]
    assert read(model, weights) == [w.value for w in weights]
    assert [float(v) for v in kept.values] == [w.value for w in weights]
    # Measured: 8.4e11 (llama) and 9.6e11 (gpt2) clipped; kept: within 0.1% of the baseline.
    assert clipped > 1000 * baseline
    assert perplexity(model) < 1.1 * baseline
    restore(model, keep(model, weights))  # restoring what is there changes nothing
    assert read(model, weights) == [w.value for w in weights]


def test_coordinates_for_another_model_or_changed_weights_are_refused(planted_reports, index):
    llama, _ = planted_reports("llama")
    gpt2, _ = planted_reports("gpt2")
    coordinates = coordinates_for(llama.path, index=index("llama"))
    with pytest.raises(InvalidInput, match="is not a parameter of this gpt2 model"):
        locate(_load(gpt2), coordinates)
    model = _load(llama)
    (first, *_) = locate(model, coordinates)
    with torch.no_grad():
        model.get_parameter(first.parameter)[first.index] *= 0.5
    with pytest.raises(InvalidInput, match="not the revision these coordinates belong to"):
        locate(model, coordinates)
    assert len(locate(model, coordinates, check_values=False)) == len(coordinates)
