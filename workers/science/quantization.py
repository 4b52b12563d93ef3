"""Weight-only round-to-nearest (RTN) quantization with and without the super weights kept in
full precision: pure functions over weight matrices.

A weight matrix is taken in its `[out, in]` orientation (GPT-2's Conv1D weights are transposed
first) and cut into blocks of `block` consecutive input channels per output row; each block gets
one scale, and every weight becomes the nearest multiple of that scale among the symmetric
integer levels `-qmax ... qmax` (`qmax = 2**(bits-1) - 1`: 7 for int4, 3 for int3). The result is
returned dequantized (the value the quantized model computes with), so a variant of the model is
just the same model with its weights replaced.

Three variants, the paper's comparison:

- `absmax`: each block's scale is its largest |weight| / qmax. The largest weight of a block is
  then represented exactly, so a super weight survives; the price is a coarse grid for the rest
  of its block.
- `clip`: weights are first clipped at a threshold chosen by `ClipRule`, so outliers no longer
  stretch their blocks' grids; the outliers themselves, the super weights among them, are lost.
- `clip_keep`: clip, quantize, then put the super weights back in full precision (the recipe of
  Yu et al., 2024, "The Super Weight in Large Language Models"): the finer grid of clipping for
  the rest, and the few weights that matter kept as they were.
"""

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F

# Integer widths the check reports: 4 bits is the usual weight-only width, 3 bits is where
# round-to-nearest starts to break models, which is where keeping the super weights is tested.
DEFAULT_BITS = (4, 3)
# Block sizes in input channels, from a common group size (64) up to whole rows (None), in
# steps of 4x: larger blocks share one scale among more weights, so one outlier coarsens the
# grid of more of them, which is what clipping addresses.
DEFAULT_BLOCKS: tuple[int | None, ...] = (64, 256, 1024, None)

# The clipping rule: |w| above CLIP_RMS_MULTIPLE x the matrix's root mean square is clipped.
# Why a multiple of the matrix's own scale, not a fixed fraction of its weights: a fraction
# clips the same number of weights whether or not a matrix has outliers (and none at all in a
# matrix of fewer than 1/(1 - quantile) weights), while a multiple of the RMS clips only what
# lies far outside the bulk, at any size. Why 10: a Gaussian matrix exceeds 10 x its RMS with
# probability 1.5e-23 (never), and trained matrices are heavy-tailed but not that much: in
# SmolLM2-135M-Instruct it clips a few weights per matrix, and the super weight lies well
# beyond it (the figures: docs/measurements.md#quantization-with-and-without-the-super-weight).
CLIP_RMS_MULTIPLE = 10.0


class Variant(StrEnum):
    ABSMAX = "absmax"
    CLIP = "clip"
    CLIP_KEEP = "clip_keep"


@dataclass(frozen=True)
class ClipRule:
    """How a matrix's clipping threshold is chosen: `rms_multiple` x its root mean square, or
    its `quantile` of |w| (what an earlier ad-hoc measurement used; kept to compare with it)."""

    rms_multiple: float | None = CLIP_RMS_MULTIPLE
    quantile: float | None = None

    def __post_init__(self) -> None:
        if (self.rms_multiple is None) == (self.quantile is None):
            raise ValueError("a clip rule is either an RMS multiple or a quantile")
        if self.rms_multiple is not None and not self.rms_multiple > 0:
            raise ValueError("the RMS multiple must be positive")
        if self.quantile is not None and not 0 < self.quantile <= 1:
            raise ValueError("the quantile must be in (0, 1]")

    @classmethod
    def at_quantile(cls, quantile: float) -> "ClipRule":
        return cls(rms_multiple=None, quantile=quantile)

    @classmethod
    def at_rms_multiple(cls, multiple: float) -> "ClipRule":
        return cls(rms_multiple=multiple, quantile=None)

    def describe(self) -> str:
        if self.quantile is not None:
            return f"|w| clipped at each matrix's {self.quantile:g} quantile of |w|"
        return f"|w| clipped at {self.rms_multiple:g} x each matrix's root mean square"

    def as_dict(self) -> dict:
        return {"rms_multiple": self.rms_multiple, "quantile": self.quantile}


@dataclass(frozen=True)
class Setting:
    """One quantized model: integer width, block size (None: whole rows) and variant."""

    bits: int
    block: int | None
    variant: Variant

    @property
    def name(self) -> str:
        return f"int{self.bits}/{'row' if self.block is None else self.block}/{self.variant}"


def settings_grid(
    bits: tuple[int, ...] = DEFAULT_BITS,
    blocks: tuple[int | None, ...] = DEFAULT_BLOCKS,
    variants: tuple[Variant, ...] = tuple(Variant),
) -> list[Setting]:
    return [Setting(b, size, v) for b in bits for size in blocks for v in variants]


def qmax(bits: int) -> int:
    """The largest integer level of symmetric `bits`-bit quantization."""
    if bits < 2:
        raise ValueError("symmetric quantization needs at least 2 bits")
    return 2 ** (bits - 1) - 1


def clip_threshold(weight: torch.Tensor, rule: ClipRule) -> float:
    """The magnitude at which `rule` clips `weight` (any shape)."""
    magnitudes = weight.detach().float().abs().flatten()
    if rule.quantile is not None:
        # kthvalue, not torch.quantile: the latter refuses tensors of more than 2**24 elements.
        k = min(max(math.ceil(rule.quantile * magnitudes.numel()), 1), magnitudes.numel())
        return float(magnitudes.kthvalue(k).values)
    assert rule.rms_multiple is not None  # a rule has exactly one of the two (__post_init__)
    return float(rule.rms_multiple * magnitudes.square().mean().sqrt())


def quantize_rtn(
    weight_out_in: torch.Tensor, bits: int, block: int | None, clip: float | None = None
) -> torch.Tensor:
    """Symmetric round-to-nearest of a `[out, in]` matrix in blocks of `block` input channels
    (None, or a block at least as long as a row: one block per row), after clipping |w| at
    `clip` when given. Returns the dequantized matrix in the input's dtype."""
    if weight_out_in.dim() != 2:
        raise ValueError("quantize_rtn takes a [out, in] matrix")
    if block is not None and block < 1:
        raise ValueError("a block holds at least one weight")
    rows, cols = weight_out_in.shape
    size = cols if block is None else min(block, cols)
    levels = qmax(bits)
    x = weight_out_in.detach().float()
    if clip is not None:
        x = x.clamp(-clip, clip)
    pad = -cols % size  # zeros do not change a block's largest magnitude
    blocks = (F.pad(x, (0, pad)) if pad else x).view(rows, -1, size)
    scale = blocks.abs().amax(dim=-1, keepdim=True).div_(levels)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero block stays 0
    # In place on the one new tensor `blocks / scale`: the matrices are large.
    dequantized = (blocks / scale).round_().clamp_(-levels, levels).mul_(scale).view(rows, -1)
    return dequantized[:, :cols].to(weight_out_in.dtype)


def quantized(
    weight_out_in: torch.Tensor,
    setting: Setting,
    keep: list[tuple[int, int]],
    threshold: float,
) -> torch.Tensor:
    """The matrix as `setting` quantizes it: `threshold` is its clipping threshold (from
    `clip_threshold`; not used by `absmax`), `keep` holds the (row, col) of its super weights,
    put back in full precision by the `clip_keep` variant."""
    clip = None if setting.variant is Variant.ABSMAX else threshold
    result = quantize_rtn(weight_out_in, setting.bits, setting.block, clip)
    if setting.variant is Variant.CLIP_KEEP and keep:
        rows, cols = zip(*keep, strict=True)
        index = (torch.tensor(rows), torch.tensor(cols))
        result[index] = weight_out_in.detach()[index]
    return result
