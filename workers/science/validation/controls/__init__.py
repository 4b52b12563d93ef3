"""Controls: other weights of the candidate's tensor, zeroed together, to tell a critical weight
apart from a fragile tensor or evaluation.

Each control is one class in one module of this package; it is found here by itself (every
module of the package is imported and every subclass of `Control` registered), and the variant
plans, the verdict and the report pick it up. Adding a control is adding a module.
"""

import importlib
import pkgutil

from workers.science.validation.controls.base import Control, Coordinate

__all__ = ["CONTROLS", "Control", "Coordinate", "control_rules"]


def _discover() -> list[Control]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted((cls() for cls in Control.__subclasses__()), key=lambda c: c.name)


CONTROLS: list[Control] = _discover()


def control_rules() -> dict[str, float | int]:
    return {key: value for control in CONTROLS for key, value in control.rules().items()}
