"""The checkpoints `swreg bench` times: the synthetic shapes (a Llama of random weights with a
planted super weight, a decoy, a mixture of experts), built once and cached, what their
construction implies, their weight files and the time to read them once."""

import time
from dataclasses import dataclass
from pathlib import Path

from workers.commands.bench.memory import MIB
from workers.fixtures.cache import cache_root
from workers.science.disk_reads import evict_from_page_cache

READ_CHUNK_BYTES = 64 * MIB


@dataclass(frozen=True)
class SyntheticShape:
    """A Llama-shaped checkpoint of random weights with one planted super weight."""

    name: str
    hidden: int
    d_ff: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    dtype: str


SHAPES = {
    # CPU machine: 3.2 GB of bf16 (as real checkpoints are stored), 134 MB per layer, 268 MB once
    # cast to float32 for the CPU: two layers, the embeddings, torch itself and the activations
    # fit under a 1.5 GiB cap that is less than half the checkpoint; the whole model in float32
    # (6.4 GB) does not.
    "cpu": SyntheticShape("cpu", 2048, 8192, 24, 16, 16, 4096, "bfloat16"),
    # GPU machine: Llama-7B's shape in bf16 (13.5 GB, as in the figures).
    "7b": SyntheticShape("7b", 4096, 11008, 32, 32, 32, 32000, "bfloat16"),
    # 1.51B parameters: Qwen2.5-1.5B's decoder (hidden 1536, d_ff 8960, 28 layers, 12 heads, 2 KV
    # heads) with a 65,536-token vocabulary, untied (3.0 GB in bf16).
    "1.5b": SyntheticShape("1.5b", 1536, 8960, 28, 12, 2, 65536, "bfloat16"),
}
PLANT_LAYER = 2
# The decoy of the 1.5B checkpoints: a spike with no super weight behind it, one input channel
# feeding 8 rows (the most spiking rows detection keeps per layer), as the real 1.5B model that
# named 45 candidates had.
DECOY_LAYER = 4
DECOY_ROWS = 8
DECOY_VALUE = 3.0


def synthetic_checkpoint(shape: SyntheticShape, plant: bool = True, decoy: bool = False) -> Path:
    """Build (once, cached) the synthetic checkpoint for `shape`: with a planted super weight at
    layer 2 (or none), and optionally a decoy spike."""
    import torch

    from workers.fixtures.planted import Plant
    from workers.fixtures.synthetic_llama import Decoy, build_synthetic_llama

    variant = ("plant" if plant else "noplant") + ("-decoy" if decoy else "")
    name = f"synthetic-{shape.name}-{shape.hidden}x{shape.d_ff}x{shape.layers}"
    if variant != "plant":  # the plain planted checkpoint keeps its earlier cache name
        name += f"-{variant}"
    target = cache_root() / "bench" / name
    if (target / "config.json").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    build_synthetic_llama(
        partial,
        hidden_size=shape.hidden,
        intermediate_size=shape.d_ff,
        num_layers=shape.layers,
        num_heads=shape.heads,
        num_kv_heads=shape.kv_heads,
        vocab_size=shape.vocab,
        dtype=getattr(torch, shape.dtype),
        plant=Plant(layer=PLANT_LAYER, row=shape.hidden // 3, col=shape.d_ff // 5, value=4.0)
        if plant
        else None,
        decoy=Decoy(
            layer=DECOY_LAYER,
            col=shape.d_ff // 7,
            rows=tuple(shape.hidden // 2 + 3 * i for i in range(DECOY_ROWS)),
            value=DECOY_VALUE,
        )
        if decoy
        else None,
    )
    partial.rename(target)
    return target


# The synthetic mixture of experts: Qwen3-MoE-shaped (one stored tensor per expert, as its
# checkpoints are), 32 experts of which each token takes 4, 10 layers, float32 on disk: 3.1 GB,
# 302 MB of experts per layer. Every token takes the same experts (the construction points every
# hidden state along one massive dimension), so most experts are read and never multiplied.
MOE_FAMILY = "qwen3_moe"
MOE_SIZE_FIELDS = dict(
    hidden=1024, heads=16, kv_heads=4, expert_inner=768, num_experts=32, top_k=4, num_layers=10
)


def synthetic_moe_checkpoint() -> Path:
    """Build (once, cached) the planted synthetic MoE checkpoint: a super weight inside a routed
    super expert of layer 1, a decoy and an unreached expert that would spike."""
    from workers.fixtures.planted_moe import MoeSize, build_planted_moe

    size = MoeSize(**MOE_SIZE_FIELDS)
    target = (
        cache_root()
        / "bench"
        / (
            f"synthetic-moe-{MOE_FAMILY}-{size.hidden}x{size.expert_inner}x{size.num_experts}e{size.top_k}"
            f"x{size.num_layers}"
        )
    )
    if (target / "config.json").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    build_planted_moe(MOE_FAMILY, partial, size=size)
    partial.rename(target)
    return target


def layer_bytes(model_dir: Path) -> int:
    """The largest decoder layer's stored bytes: what the streamed sweep's peak is measured in."""
    from workers.science.checkpoint import open_checkpoint

    checkpoint = open_checkpoint(model_dir)
    sizes: dict[int, int] = {}
    for name, (start, end) in checkpoint.tensor_span.items():
        parts = name.split(".")
        if "layers" in parts and parts[parts.index("layers") + 1].isdigit():
            layer = int(parts[parts.index("layers") + 1])
            sizes[layer] = sizes.get(layer, 0) + end - start
    return max(sizes.values(), default=0)


def expected_verdicts(
    shape: SyntheticShape, plant: bool, decoy: bool
) -> dict[tuple[int, int, int], str]:
    """(layer, row, col) -> the verdict the construction implies."""
    expected = {}
    if plant:
        expected[(PLANT_LAYER, shape.hidden // 3, shape.d_ff // 5)] = "verified"
    if decoy:
        for i in range(DECOY_ROWS):
            expected[(DECOY_LAYER, shape.hidden // 2 + 3 * i, shape.d_ff // 7)] = "rejected"
    return expected


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors"))


def read_once(files: list[Path], cold: bool) -> tuple[float, int]:
    """Seconds to read every byte of the files once, and the bytes read."""
    if cold:
        evict_from_page_cache(files)
    buffer = bytearray(READ_CHUNK_BYTES)
    view = memoryview(buffer)
    total = 0
    started = time.perf_counter()
    for file in files:
        with file.open("rb", buffering=0) as handle:
            while count := handle.readinto(view):
                total += count
    return time.perf_counter() - started, total
