"""What a control is: which weights it zeroes, what it records, whether it vetoes a verdict."""

from typing import Any, ClassVar

import torch

Coordinate = tuple[int, int]  # (row, col): output channel, input channel


class Control:
    """One control: which weights it zeroes, what it records, whether it vetoes a verdict."""

    name: ClassVar[str]  # key in the evidence's `controls`

    def rules(self) -> dict[str, float | int]:
        """The constants that define it, reported with every verdict."""
        return {}

    def coordinates(
        self, weight_out_in: torch.Tensor, exclude: set[Coordinate], layer: int
    ) -> list[Coordinate]:
        """The weights of the tensor (viewed [out, in]) to zero, none of them in `exclude`."""
        raise NotImplementedError

    def details(self, zeroed: list[Coordinate], layer: int, stored_index) -> dict[str, Any]:
        """What the evidence keeps about this control beside its score."""
        return {}

    def veto(self, ratio: float) -> str | None:
        """Why a verdict cannot attribute the ablation's effect, given this control's perplexity
        ratio; None when the control does not stand in the way."""
        return None

    def describe(self, ratio: float) -> str | None:
        """A clause for a `verified` verdict's reason, if this control is part of it."""
        return None
