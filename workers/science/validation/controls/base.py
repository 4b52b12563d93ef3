"""What a control is: which weights it zeroes, what it records, whether it vetoes a verdict."""

from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from workers.science.validation.statistics import Interval

Coordinate = tuple[int, int]  # (row, col): output channel, input channel


class Control:
    """One control: which weights it zeroes, what it records, whether it vetoes a verdict."""

    name: ClassVar[str]  # key in the evidence's `controls`
    # The perplexity ratio its veto turns on, which also decides when it may stop being scored;
    # None for a control that only records (it is scored on the tokens of the tensor's first
    # control that has a threshold).
    threshold: ClassVar[float | None] = None

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

    def veto(self, interval: "Interval") -> str | None:
        """Why a verdict cannot attribute the ablation's effect, when this control's interval
        shows it; None when the control does not stand in the way."""
        return None

    def doubt(self, interval: "Interval") -> str | None:
        """Why a `verified` verdict cannot be given yet: the interval neither shows nor rules out
        a veto. None when it does one or the other."""
        return None

    def describe(self, interval: "Interval") -> str | None:
        """A clause for a `verified` verdict's reason, if this control is part of it."""
        return None
