"""The planted tiny models are what they claim: a genuine super activation, super weights whose
removal breaks the model, a larger dead decoy and random weights whose removal does not.

Everything is measured on the saved checkpoint with plain transformers forward passes and
forward hooks on the down projection, found by its name in the loaded model.
"""

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from registry.paths import DATA_DIR
from workers.synthetic import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SUPPORTED_MODEL_TYPES,
    TINY_FFN,
    TINY_HIDDEN,
    TOKENIZER_SIZE,
    Plant,
    PlantedModel,
    build_byte_tokenizer,
    build_planted_model,
    build_synthetic_llama,
)

EVAL_TOKENS = 512  # a forward over this many tokens takes milliseconds on the tiny models
KL_BROKEN = 0.5  # nats: zeroing a super weight must move the next-token distribution this much
KL_HARMLESS = 0.01  # nats: the controls must stay under this
PERPLEXITY_BLOWUP = 10.0  # a super weight's removal multiplies perplexity at least this much
SPIKE_RATIO = 100.0  # planted layer's max |Y| over the median of the layers' max |Y|
RANDOM_CONTROLS = 100
CONTROL_SEED = 1234


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: thread start-up and contention cost more than the arithmetic (10x on a
    loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- measuring -------------------------------------------------------------------------------------


def _eval_ids() -> torch.Tensor:
    text = (DATA_DIR / "eval" / "eval_text.txt").read_text()
    ids = build_byte_tokenizer()(text)["input_ids"][:EVAL_TOKENS]
    return torch.tensor([ids])


@pytest.fixture(scope="module")
def eval_ids() -> torch.Tensor:
    return _eval_ids()


@pytest.fixture(scope="module", params=SUPPORTED_MODEL_TYPES)
def planted(request, tmp_path_factory) -> PlantedModel:
    return build_planted_model(request.param, tmp_path_factory.mktemp("planted") / request.param)


@pytest.fixture(scope="module")
def model(planted):
    return AutoModelForCausalLM.from_pretrained(planted.path, dtype=torch.float32).eval()


def _down_weight(model, planted: PlantedModel, layer: int) -> torch.nn.Parameter:
    return model.get_submodule(planted.down_proj_module(layer)).weight


@contextmanager
def _zeroed(model, planted: PlantedModel, coords: list[Plant]) -> Iterator[None]:
    """Zero weights (given in [row, col] terms) at their stored index, then restore them."""
    saved = []
    with torch.no_grad():
        for c in coords:
            weight, index = _down_weight(model, planted, c.layer), planted.stored_index(c)
            saved.append((weight, index, weight[index].clone()))
            weight[index] = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for weight, index, value in saved:
                weight[index] = value


def _log_probs(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)


def _mean_kl(base: torch.Tensor, other: torch.Tensor) -> float:
    """Mean over positions of KL(base || other), in nats."""
    return (base.exp() * (base - other)).sum(-1).mean().item()


def _perplexity(log_probs: torch.Tensor, ids: torch.Tensor) -> float:
    targets = ids[0, 1:]
    nll = -log_probs[:-1].gather(-1, targets[:, None]).mean()
    return nll.exp().item()


def _down_projection_io(model, planted: PlantedModel, ids: torch.Tensor, num_layers: int):
    """Per layer: the down projection's input X and output Y, as [tokens, features]."""
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for layer in range(num_layers):
        module = model.get_submodule(planted.down_proj_module(layer))

        def hook(_mod, args, out, layer=layer):
            # OPT runs its MLP on [batch * tokens, features]; the others keep [batch, tokens, .].
            x, y = args[0].detach(), out.detach()
            seen[layer] = (x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return seen


def _random_controls(planted: PlantedModel, shape: tuple[int, int]) -> list[Plant]:
    """RANDOM_CONTROLS distinct weights of the planted matrix, none of them planted or dead."""
    layer = planted.plants[0].layer
    special = {(p.row, p.col) for p in planted.plants + [planted.dead]}
    rng = random.Random(CONTROL_SEED)
    rows, cols = shape
    picked: set[tuple[int, int]] = set()
    while len(picked) < RANDOM_CONTROLS:
        rc = (rng.randrange(rows), rng.randrange(cols))
        if rc not in special:
            picked.add(rc)
    return [Plant(layer, r, c, 0.0) for r, c in sorted(picked)]


# --- the checkpoint ---------------------------------------------------------------------------------


def test_checkpoint_stores_every_coordinate_at_the_named_tensor(planted):
    layer = planted.plants[0].layer
    with safe_open(str(planted.path / "model.safetensors"), "pt") as f:
        weight = f.get_tensor(planted.down_proj_tensor(layer))
    hidden, d_ff = TINY_HIDDEN, TINY_FFN
    assert tuple(weight.shape) == ((d_ff, hidden) if planted.conv1d else (hidden, d_ff))
    for p in planted.plants + [planted.dead]:
        assert weight[planted.stored_index(p)].item() == pytest.approx(p.value)
    # The decoy is the single largest magnitude in its matrix, larger than every plant.
    dead_index = planted.stored_index(planted.dead)
    assert weight.abs().argmax().item() == dead_index[0] * weight.shape[1] + dead_index[1]
    assert abs(planted.dead.value) > max(abs(p.value) for p in planted.plants)


def test_gpt2_down_projection_is_a_conv1d_stored_transposed(tmp_path):
    plant = Plant(layer=1, row=5, col=200, value=3.0)
    pm = build_planted_model("gpt2", tmp_path / "gpt2", plants=[plant], add_dead=False)
    assert pm.down_proj_tensor(1) == "transformer.h.1.mlp.c_proj.weight"
    assert pm.conv1d and pm.stored_index(plant) == (200, 5)
    with safe_open(str(pm.path / "model.safetensors"), "pt") as f:
        weight = f.get_tensor(pm.down_proj_tensor(1))
    assert tuple(weight.shape) == (TINY_FFN, TINY_HIDDEN) and weight[200, 5].item() == 3.0


def test_tokenizer_loads_offline_and_prepends_bos(planted):
    tokenizer = AutoTokenizer.from_pretrained(planted.path)
    assert len(tokenizer) == TOKENIZER_SIZE
    assert tokenizer("Hi")["input_ids"] == [BOS_ID, ord("H"), ord("i")]
    assert tokenizer.decode(tokenizer("héllo")["input_ids"], skip_special_tokens=True) == "héllo"
    config = json.loads((planted.path / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (BOS_ID, EOS_ID, PAD_ID)
    assert config["model_type"] == planted.model_type and config["vocab_size"] == TOKENIZER_SIZE


# --- the super activation ----------------------------------------------------------------------------


def test_planted_layer_shows_a_super_activation(planted, model, eval_ids):
    plant = planted.plants[0]
    io = _down_projection_io(model, planted, eval_ids, model.config.num_hidden_layers)
    layer_max = torch.tensor([y.abs().max().item() for _, y in io.values()])
    x, y = io[plant.layer]
    assert layer_max.argmax().item() == plant.layer
    assert y.abs().max(dim=0).values.argmax().item() == plant.row
    assert layer_max[plant.layer] >= SPIKE_RATIO * layer_max.median()
    # It is caused by the planted channels: their inputs are the largest, on every token.
    plant_cols = {p.col for p in planted.plants}
    assert set(x.abs().max(dim=0).values.topk(len(plant_cols)).indices.tolist()) == plant_cols
    assert (x[:, [p.col for p in planted.plants]].abs() > 100).all()


def test_zeroing_any_plant_breaks_the_model(planted, model, eval_ids):
    base = _log_probs(model, eval_ids)
    for plant in planted.plants:
        with _zeroed(model, planted, [plant]):
            ablated = _log_probs(model, eval_ids)
        assert _mean_kl(base, ablated) > KL_BROKEN, plant
        assert _perplexity(ablated, eval_ids) > PERPLEXITY_BLOWUP * _perplexity(base, eval_ids), plant


def test_the_dead_decoy_is_dead_and_zeroing_it_changes_nothing(planted, model, eval_ids):
    dead = planted.dead
    x, _ = _down_projection_io(model, planted, eval_ids, dead.layer + 1)[dead.layer]
    assert x[:, dead.col].abs().max().item() <= 1e-6
    base = _log_probs(model, eval_ids)
    with _zeroed(model, planted, [dead]):
        assert _mean_kl(base, _log_probs(model, eval_ids)) < KL_HARMLESS


def test_zeroing_random_weights_of_the_matrix_changes_little(planted, model, eval_ids):
    shape = tuple(_down_weight(model, planted, planted.plants[0].layer).shape)
    rows_cols = (shape[1], shape[0]) if planted.conv1d else shape
    base = _log_probs(model, eval_ids)
    with _zeroed(model, planted, _random_controls(planted, rows_cols)):
        assert _mean_kl(base, _log_probs(model, eval_ids)) < KL_HARMLESS


# --- other layouts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["llama", "olmo2", "gpt2"])
def test_custom_plants_in_two_layers_are_each_critical(model_type, tmp_path, eval_ids):
    plants = [Plant(0, 7, 11, 3.0), Plant(2, 21, 100, -5.0)]
    pm = build_planted_model(model_type, tmp_path / model_type, plants=plants, add_dead=False, seed=3)
    assert pm.plants == plants and pm.dead is None
    model = AutoModelForCausalLM.from_pretrained(pm.path, dtype=torch.float32).eval()
    base = _log_probs(model, eval_ids)
    for plant in plants:
        with _zeroed(model, pm, [plant]):
            assert _mean_kl(base, _log_probs(model, eval_ids)) > KL_BROKEN, plant


def test_bad_requests_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unsupported model_type"):
        build_planted_model("bert", tmp_path / "x")
    with pytest.raises(ValueError, match="outside"):
        build_planted_model("llama", tmp_path / "y", plants=[Plant(9, 0, 0, 1.0)])
    with pytest.raises(ValueError, match="must not feed a plant"):
        build_planted_model("llama", tmp_path / "z", plants=[Plant(1, 2, 3, 1.0)], dead=Plant(1, 4, 3, 9.0))


# --- the large, streamed Llama ------------------------------------------------------------------------


def test_synthetic_llama_is_sharded_loads_and_spikes(tmp_path, eval_ids):
    plant = Plant(layer=1, row=17, col=300, value=4.0)
    pm = build_synthetic_llama(
        tmp_path / "big", hidden_size=256, intermediate_size=512, num_layers=4, num_heads=4,
        num_kv_heads=2, vocab_size=320, dtype=torch.bfloat16, shard_bytes=600_000, plant=plant,
    )
    index = json.loads((pm.path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and all((pm.path / s).is_file() for s in shards)
    tensor = pm.down_proj_tensor(1)
    with safe_open(str(pm.path / index["weight_map"][tensor]), "pt") as f:
        stored = f.get_tensor(tensor)
    assert stored.dtype == torch.bfloat16 and stored[17, 300].item() == 4.0
    assert index["metadata"]["total_size"] == sum(
        (pm.path / s).stat().st_size for s in shards
    ) - sum(_header_bytes(pm.path / s) for s in shards)

    model = AutoModelForCausalLM.from_pretrained(pm.path, dtype=torch.float32).eval()
    io = _down_projection_io(model, pm, eval_ids, 4)
    layer_max = torch.tensor([y.abs().max().item() for _, y in io.values()])
    assert layer_max.argmax().item() == 1 and layer_max[1] >= SPIKE_RATIO * layer_max.median()
    assert io[1][1].abs().max(dim=0).values.argmax().item() == 17
    base = _log_probs(model, eval_ids)
    with _zeroed(model, pm, [plant]):
        assert _mean_kl(base, _log_probs(model, eval_ids)) > KL_BROKEN


def _header_bytes(path: Path) -> int:
    """A safetensors file is an 8-byte length, a JSON header of that length, then the data."""
    with path.open("rb") as fh:
        return 8 + int.from_bytes(fh.read(8), "little")
