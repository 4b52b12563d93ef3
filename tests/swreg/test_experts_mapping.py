"""`locate` and `keeping` inside routed experts, on tiny real models of each way checkpoints
store experts (built from transformers' own config classes and saved by transformers): one 2-D
tensor per expert (Qwen3-MoE, Mixtral's w2), a fused [experts, in, out] tensor (gpt-oss) and a
fused [experts, out, in] tensor under another name (Granite-MoE). transformers 5 holds them all
as one fused parameter; the located weight must hold exactly the value stored on disk."""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import (
    AutoModelForCausalLM,
    GptOssConfig,
    GraniteMoeConfig,
    MixtralConfig,
    Qwen3MoeConfig,
)

from registry import migrate
from registry.database import make_engine, make_sessionmaker, transaction
from registry.index import service as index_service
from registry.superweights import service
from registry.superweights.schemas import SuperWeightOut
from swreg import Index, InvalidInput, coordinates_for, keeping, locate, read
from tests.expert_reports import expert_coordinate, super_expert
from tests.helpers import report as make_report
from workers.sources.pinning import hash_local_weights, local_revision

HIDDEN, EXPERTS, LAYER, EXPERT = 16, 4, 1, 2
ROW, COL = 5, 3  # output channel (< hidden size), input channel (< every expert's inner width)
SMALL = {
    "hidden_size": HIDDEN,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 64,
    "head_dim": 8,
}


@dataclass(frozen=True)
class Layout:
    config: object
    tensor: str  # the stored tensor holding expert EXPERT's down projection in layer LAYER
    index: list[int]  # (ROW, COL) of expert EXPERT as that tensor stores it
    parameter: str  # the loaded model's parameter
    loaded_index: tuple[int, ...]
    transposed: bool


LAYOUTS = {
    "qwen3_moe per-expert [out, in]": Layout(
        Qwen3MoeConfig(
            **SMALL, moe_intermediate_size=8, num_experts=EXPERTS, num_experts_per_tok=2
        ),
        f"model.layers.{LAYER}.mlp.experts.{EXPERT}.down_proj.weight",
        [ROW, COL],
        f"model.layers.{LAYER}.mlp.experts.down_proj",
        (EXPERT, ROW, COL),
        False,
    ),
    "mixtral per-expert w2 [out, in]": Layout(
        MixtralConfig(**SMALL, num_local_experts=EXPERTS, num_experts_per_tok=2),
        f"model.layers.{LAYER}.block_sparse_moe.experts.{EXPERT}.w2.weight",
        [ROW, COL],
        f"model.layers.{LAYER}.mlp.experts.down_proj",
        (EXPERT, ROW, COL),
        False,
    ),
    "gpt_oss fused [experts, in, out]": Layout(
        GptOssConfig(**SMALL, num_local_experts=EXPERTS, num_experts_per_tok=2),
        f"model.layers.{LAYER}.mlp.experts.down_proj",
        [EXPERT, COL, ROW],
        f"model.layers.{LAYER}.mlp.experts.down_proj",
        (EXPERT, COL, ROW),
        True,
    ),
    "granitemoe fused [experts, out, in]": Layout(
        GraniteMoeConfig(**SMALL, num_local_experts=EXPERTS, num_experts_per_tok=2),
        f"model.layers.{LAYER}.block_sparse_moe.output_linear.weight",
        [EXPERT, ROW, COL],
        f"model.layers.{LAYER}.block_sparse_moe.experts.down_proj",
        (EXPERT, ROW, COL),
        False,
    ),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> directory of that layout's tiny model, saved as safetensors (built on first use)."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            torch.manual_seed(18)
            model = AutoModelForCausalLM.from_config(LAYOUTS[name].config)
            path = tmp_path_factory.mktemp(name.split()[0])
            model.save_pretrained(path)
            built[name] = path
        return built[name]

    return get


def _stored(path: Path, tensor: str) -> torch.Tensor:
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return f.get_tensor(tensor)


def _load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _coordinate(layout: Layout, value: float, **changes) -> SuperWeightOut:
    fields = {
        "tensor": layout.tensor,
        "index": layout.index,
        "layer": LAYER,
        "module": "mlp.experts.down_proj",
        "row": ROW,
        "col": COL,
        "expert": EXPERT,
        "value": value,
        "dtype": "float32",
        "state": "verified",
        "evidence": {},
        "provenance": {},
    }
    return SuperWeightOut(**{**fields, **changes})


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_weight_inside_an_expert_is_located_where_the_checkpoint_stores_it(saved, name):
    layout, path = LAYOUTS[name], saved(name)
    stored = _stored(path, layout.tensor)
    value = float(stored[tuple(layout.index)])
    model = _load(path)
    (weight,) = locate(model, [_coordinate(layout, value)])
    assert (weight.parameter, weight.index, weight.transposed, weight.expert) == (
        layout.parameter,
        layout.loaded_index,
        layout.transposed,
        EXPERT,
    )
    parameter = model.get_parameter(weight.parameter).detach()
    assert float(parameter[weight.index]) == value
    # The whole expert, not just one scalar, is where the mapping says: the layout is right.
    expert = parameter[EXPERT]
    assert torch.equal(expert, stored if stored.dim() == 2 else stored[EXPERT])


@pytest.mark.parametrize("name", LAYOUTS)
def test_keeping_puts_the_expert_weight_back_after_the_tensor_is_changed(saved, name):
    layout, path = LAYOUTS[name], saved(name)
    value = float(_stored(path, layout.tensor)[tuple(layout.index)])
    model = _load(path)
    weights = locate(model, [_coordinate(layout, value)])
    parameter = model.get_parameter(layout.parameter)
    with keeping(model, weights), torch.no_grad():
        parameter.zero_()  # a quantizer that flushes this expert tensor to zero
        assert read(model, weights) == [0.0]
    assert read(model, weights) == [value]
    assert int(torch.count_nonzero(parameter)) == (1 if value != 0 else 0)


def test_a_value_the_model_does_not_hold_is_refused(saved):
    layout = LAYOUTS["qwen3_moe per-expert [out, in]"]
    path = saved("qwen3_moe per-expert [out, in]")
    value = float(_stored(path, layout.tensor)[tuple(layout.index)])
    with pytest.raises(InvalidInput, match=r"holds .*, the registry recorded"):
        locate(_load(path), [_coordinate(layout, value + 1.0)])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expert": 3}, "expert 2 in model.layers.1.mlp.experts.down_proj, not expert 3"),
        ({"layer": 0}, "is not in layer 0"),
        ({"index": [EXPERT, ROW, COL]}, r"does not match row 5, col 3 .* \[expert, in, out\]"),
        (
            {"index": [EXPERT, COL, 40], "row": 40},
            "is outside model.layers.1.mlp.experts.down_proj of shape",
        ),
        ({"tensor": "model.layers.1.mlp.experts.up_proj"}, "is not a tensor of this gpt_oss model"),
    ],
)
def test_a_coordinate_that_does_not_fit_the_experts_is_refused(saved, changes, message):
    layout = LAYOUTS["gpt_oss fused [experts, in, out]"]
    model = _load(saved("gpt_oss fused [experts, in, out]"))
    with pytest.raises(InvalidInput, match=message):
        locate(model, [_coordinate(layout, None, **changes)])


def test_a_fused_gate_up_tensor_is_refused_not_misread(saved):
    """Qwen3-MoE's per-expert gate_proj is concatenated with up_proj while loading: a stored index
    cannot address the result, so it is refused."""
    layout = LAYOUTS["qwen3_moe per-expert [out, in]"]
    model = _load(saved("qwen3_moe per-expert [out, in]"))
    tensor = f"model.layers.{LAYER}.mlp.experts.{EXPERT}.gate_proj.weight"
    with pytest.raises(InvalidInput, match="by more than stacking experts"):
        locate(model, [_coordinate(layout, None, tensor=tensor)])


@pytest.mark.parametrize(
    "name", ["gpt_oss fused [experts, in, out]", "qwen3_moe per-expert [out, in]"]
)
def test_an_expert_coordinate_round_trips_through_the_index_and_is_located(saved, name, tmp_path):
    """Recorded for the directory's content revision, exported, read back as an index file:
    `coordinates_for` finds the coordinate (its three or two indices and its expert) and
    `locate` finds the stored value in the loaded model."""
    layout, path = LAYOUTS[name], saved(name)
    value = float(_stored(path, layout.tensor)[tuple(layout.index)])
    report = make_report(num_layers=2)
    report["super_weights"] = [
        expert_coordinate(
            LAYER,
            EXPERT,
            layout.index,
            ROW,
            COL,
            value,
            "verified",
            tensor=layout.tensor,
            module="mlp.experts.down_proj",
            ablated=300.0,
        )
    ]
    report["super_experts"] = [
        super_expert(LAYER, EXPERT, "verified", max_abs_output=40.0, pruned=90.0)
    ]
    url = f"sqlite:///{tmp_path / 'swreg.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            service.record_report(
                session,
                model_id="tiny/moe",
                revision=local_revision(hash_local_weights(path)),
                revision_kind="content",
                report=report,
            )
            document = index_service.export_document(session)
    finally:
        engine.dispose()
    index_file = tmp_path / "index.json"
    index_file.write_text(index_service.dumps(document))
    coordinates = coordinates_for(path, index=Index.load(index_file))
    (coordinate,) = coordinates
    assert (coordinate.index, coordinate.expert) == (layout.index, EXPERT)
    assert [(se.layer, se.expert, se.state) for se in coordinates.super_experts] == [
        (LAYER, EXPERT, "verified")
    ]
    model = _load(path)
    (weight,) = locate(model, coordinates)
    assert float(model.get_parameter(weight.parameter).detach()[weight.index]) == value


@pytest.mark.parametrize("family", ["gpt_oss", "qwen3_moe"])
def test_a_detected_moe_report_round_trips_through_export_and_import_and_is_located(
    family, tmp_path
):
    """The real pipeline on a planted MoE checkpoint (a fused [experts, in, out] tensor, or one
    tensor per expert): the report recorded, exported, imported into an empty registry and
    exported again byte for byte; `coordinates_for` then gives the verified super weight (three
    indices or two, with its expert) and the verified super expert, and `locate` finds the
    planted value in the loaded model."""
    from workers.fixtures.planted_moe import build_planted_moe
    from workers.science.pipeline.steps import AnalysisOptions
    from workers.science.pipeline.sweep import analyse

    planted = build_planted_moe(family, tmp_path / "model")
    report = analyse(planted.path, AnalysisOptions(eval_tokens=256)).as_json_dict()
    revision = local_revision(hash_local_weights(planted.path))
    documents = []
    for name in ("first", "second"):
        url = f"sqlite:///{tmp_path / f'{name}.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            with transaction(make_sessionmaker(engine)) as session:
                if not documents:
                    service.record_report(
                        session,
                        model_id=f"tiny/{family}",
                        revision=revision,
                        revision_kind="content",
                        report=report,
                    )
                else:
                    index_service.import_document(session, json.loads(documents[0]))
            with transaction(make_sessionmaker(engine)) as session:
                documents.append(
                    index_service.dumps(
                        index_service.export_document(
                            session, generated_at=datetime(2026, 12, 6, tzinfo=UTC)
                        )
                    )
                )
        finally:
            engine.dispose()
    assert documents[0] == documents[1]
    index_file = tmp_path / "index.json"
    index_file.write_text(documents[1])
    coordinates = coordinates_for(planted.path, index=Index.load(index_file))
    verified = [c for c in coordinates if c.state == "verified"]
    assert [(c.layer, c.expert, c.row, c.col) for c in verified] == [
        (planted.layer, planted.super_expert, planted.row, planted.col)
    ]
    assert len(verified[0].index) == (3 if family == "gpt_oss" else 2)
    assert [(s.layer, s.expert, s.state) for s in coordinates.super_experts] == [
        (planted.layer, planted.super_expert, "verified")
    ]
    model = _load(planted.path)
    (weight,) = locate(model, verified)
    assert float(model.get_parameter(weight.parameter).detach()[weight.index]) == planted.value
