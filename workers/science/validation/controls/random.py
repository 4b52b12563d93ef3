"""Zeroing random weights of the tensor: if that moves perplexity, the tensor (or the
evaluation) is too fragile to attribute any ablation's effect to one weight."""

import math

import torch

from workers.science.validation.controls.base import Control, Coordinate

RANDOM_CONTROL_WEIGHTS = 100
# Fixed so that a re-run draws the same random control weights (seeded per layer).
CONTROL_SEED = 2411_07191
# Zeroing 100 random weights of the tensor must not raise perplexity by more than 5%: otherwise
# the tensor or the evaluation is too fragile to judge (SmolLM2's figure:
# docs/measurements.md#validation).
# One-sided: a control that lowers perplexity does not make the ablation's rise less telling.
MAX_RANDOM_CONTROL_RATIO = 1.05


def random_coordinates(
    rows: int, cols: int, exclude: set[Coordinate], count: int, generator: torch.Generator
) -> list[Coordinate]:
    """`count` distinct coordinates drawn uniformly, none in `exclude`. Drawn by rejection
    rather than from a permutation of the whole tensor, which would cost 8 bytes per weight."""
    chosen: list[Coordinate] = []
    seen = set(exclude)
    while len(chosen) < count:
        for flat in torch.randint(rows * cols, (count,), generator=generator).tolist():
            coordinate = divmod(flat, cols)
            if coordinate not in seen and len(chosen) < count:
                seen.add(coordinate)
                chosen.append(coordinate)
    return chosen


class RandomControl(Control):
    name = "random"
    threshold = MAX_RANDOM_CONTROL_RATIO

    def rules(self):
        return {
            "random_control_weights": RANDOM_CONTROL_WEIGHTS,
            "max_random_control_ratio": MAX_RANDOM_CONTROL_RATIO,
        }

    def seed(self, layer: int) -> int:
        return CONTROL_SEED + layer

    def coordinates(self, weight_out_in, exclude, layer):
        rows, cols = weight_out_in.shape
        generator = torch.Generator().manual_seed(self.seed(layer))
        return random_coordinates(rows, cols, exclude, RANDOM_CONTROL_WEIGHTS, generator)

    def details(self, zeroed, layer, stored_index):
        return {"weights": len(zeroed), "seed": self.seed(layer)}

    def veto(self, interval):
        # One-sided: only a rise vetoes, and only one the interval shows (its low end above).
        if interval.low > math.log(MAX_RANDOM_CONTROL_RATIO):
            return (
                f"random control moved perplexity {interval.describe()} "
                f"(> x{MAX_RANDOM_CONTROL_RATIO}): the tensor is too fragile to attribute the "
                "effect"
            )
        return None

    def doubt(self, interval):
        if interval.high > math.log(MAX_RANDOM_CONTROL_RATIO) and not self.veto(interval):
            return (
                f"random control moved perplexity {interval.describe()}, which neither shows nor "
                f"rules out a rise above x{MAX_RANDOM_CONTROL_RATIO}"
            )
        return None

    def describe(self, interval):
        return f"{RANDOM_CONTROL_WEIGHTS} random weights move it x{interval.ratio:.3f}"
