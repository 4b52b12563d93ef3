"""Controls: other weights of the candidate's tensor, zeroed together, to tell a critical weight
apart from a fragile tensor or evaluation.

Each control is one class in one module of this package, listed in `CONTROLS` below (in the
order of their names); the variant plans, the verdict and the report pick it up from there.
Adding a control is adding a module and its line in that list.
"""

from workers.science.validation.controls.base import Control, Coordinate
from workers.science.validation.controls.random import RandomControl
from workers.science.validation.controls.top_k import TopKControl

__all__ = ["CONTROLS", "Control", "Coordinate", "control_rules"]

CONTROLS: list[Control] = [RandomControl(), TopKControl()]


def control_rules() -> dict[str, float | int]:
    return {key: value for control in CONTROLS for key, value in control.rules().items()}
