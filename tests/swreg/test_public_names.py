"""The public package's three lists of its names agree: `_EXPORTS` (name -> the module that
defines it, for the lazy import), `__all__`, and the imports under TYPE_CHECKING (what type
checkers see); and each name is defined where `_EXPORTS` says."""

import ast
import importlib
from pathlib import Path

import swreg

SOURCE = Path(swreg.__file__)


def _type_checking_imports() -> dict[str, str]:
    """Name -> module of every `from M import N` under `if TYPE_CHECKING:`."""
    tree = ast.parse(SOURCE.read_text(), filename=str(SOURCE))
    found: dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module, ast.dump(
                    statement
                )
                for alias in statement.names:
                    found[alias.asname or alias.name] = statement.module
    return found


def test_exports_all_and_type_checking_imports_name_the_same_things():
    assert sorted(swreg._EXPORTS) == sorted(swreg.__all__)
    assert _type_checking_imports() == swreg._EXPORTS


def test_all_is_sorted_without_repeats():
    assert swreg.__all__ == sorted(set(swreg.__all__))


def test_every_name_is_defined_in_its_module():
    for name, module in swreg._EXPORTS.items():
        assert hasattr(importlib.import_module(module), name), f"{module} has no {name}"
