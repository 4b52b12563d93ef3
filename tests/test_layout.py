"""The layout's rules, checked on the source: no import cycle, and the dependency rule.

The dependency rule, in one sentence: the contract imports nothing of swreg; the science, the
sources and the fixtures import nothing from the registry; the registry imports from the workers
only the contract and the pinning entry point; only the public package `swreg`, the command line
and the worker loop import both, and nothing but the command line imports the public package.

Imports are read from the source (every `import` statement, at module level or inside a
function), so a lazy import counts as much as an eager one. Modules loaded by name count too for
the dependency rule: `importlib.import_module("a.b")`, and in a module that imports computed names
(the command table of `registry/cli.py`, the public package's lazy names) every string that names
a project module (`"a.b"` or `"a.b:attribute"`). Those are loaded one at a time on demand, so they
are left out of the cycle check (`swreg bench-cli` reads the command table that names it).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, python_env

PACKAGES = ("registry", "workers", "swreg")
HEAVY = ("torch", "transformers", "huggingface_hub", "safetensors")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            relative = path.relative_to(REPO_ROOT / package)
            if relative.parts[0] == "migrations":  # Alembic scripts: data, run by Alembic
                continue
            modules[_module_name(path)] = path
    return modules


MODULES = _sources()


def _imports(path: Path) -> set[str]:
    """The project modules a module imports (`from a.b import c` names a.b.c when that is a
    module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES and n in MODULES)
    return found


GRAPH = {module: _imports(path) for module, path in MODULES.items()}


def _is_import_module(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module"
    )


def _named_imports(path: Path) -> set[str]:
    """The project modules a module loads by name (see the module's docstring)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_import_module(n)]
    named = {
        call.args[0].value
        for call in calls
        if call.args
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    }
    if len(named) < len(calls):  # some name is computed: every module a string names may be it
        named |= {
            node.value.split(":")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
    return {n for n in named if n in MODULES}


NAMED = {module: _named_imports(path) for module, path in MODULES.items()}
# What the dependency rule is checked on: every import statement and every load by name.
EDGES = {module: GRAPH[module] | NAMED[module] for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_loads_by_name_are_seen():
    """The command table's every target and the public package's lazy names are edges."""
    from registry.cli import COMMANDS
    from swreg import _EXPORTS

    assert {entry.target.split(":")[0] for entry in COMMANDS.values()} <= NAMED["registry.cli"]
    assert set(_EXPORTS.values()) <= NAMED["swreg"]


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(importers: tuple[str, ...], allowed) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in EDGES.items()
        if _in(module, *importers)
        for target in targets
        if not allowed(target)
    )


def test_the_contract_imports_nothing_of_swreg():
    assert _violations(("workers.contract",), lambda t: _in(t, "workers.contract")) == []


def test_science_sources_and_fixtures_import_nothing_from_the_registry():
    importers = ("workers.science", "workers.sources", "workers.fixtures", "workers.contract")
    assert _violations(importers, lambda t: not _in(t, "registry")) == []


# The command line: its table names the workers' commands, and its read commands read a remote
# server through the public client (`registry.readers`, what `--api URL` reads from).
COMMAND_LINE = ("registry.cli", "registry.readers")


def test_the_registry_imports_only_the_contract_and_the_pinning_entry_point():
    allowed = ("registry", "workers.contract", "workers.sources.pinning")
    found = _violations(("registry",), lambda t: _in(t, *allowed))
    # the command line may import both sides
    assert [v for v in found if not _in(v.split(" imports ")[0], *COMMAND_LINE)] == []


def test_only_the_public_package_the_command_line_and_the_worker_import_both_sides():
    seams = ("workers.contract", "workers.sources.pinning")  # what the registry may use
    both = {
        module
        for module, targets in EDGES.items()
        if any(_in(t, "registry") for t in targets)
        and any(_in(t, "workers") and not _in(t, *seams) for t in targets)
    }
    assert all(
        _in(m, "swreg", "workers.worker", "workers.commands", *COMMAND_LINE) for m in both
    ), both


def test_nothing_but_the_command_line_imports_the_public_package():
    importers = ("registry", "workers")
    allowed_importers = ("workers.commands", *COMMAND_LINE)
    assert [
        v
        for v in _violations(importers, lambda t: not _in(t, "swreg"))
        if not _in(v.split(" imports ")[0], *allowed_importers)
    ] == []


def test_importing_the_public_package_loads_nothing_heavy():
    """`import swreg` and its client, index reader and coordinates_for load no model library;
    torch and transformers come with the mapping helpers only."""
    code = (
        "import sys\n"
        "import swreg\n"
        f"heavy = lambda: sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(heavy())\n"
        "swreg.Client, swreg.Index, swreg.coordinates_for, swreg.NotFound\n"
        "print(heavy())\n"
        "swreg.locate\n"
        "print(heavy())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), check=True
    )
    bare, reading, mapping = result.stdout.strip().splitlines()[-3:]
    assert (bare, reading) == ("[]", "[]"), result.stdout
    assert "torch" in mapping and "transformers" in mapping


# What no `swreg ... --help` may import: the model libraries and the registry's server, database
# and schema libraries (each costs tenths of a second of start-up; see `swreg bench-cli`).
HEAVY_FOR_HELP = (*HEAVY, "fastapi", "sqlalchemy", "pydantic", "alembic", "uvicorn", "numpy")


def _help_argvs() -> list[list[str]]:
    from registry.cli import every_command

    return [[], *(path.split() for path in every_command())]


@pytest.mark.parametrize("argv", _help_argvs(), ids=lambda argv: " ".join(argv) or "swreg")
def test_help_imports_nothing_heavy(argv):
    code = (
        "import sys\n"
        "from registry.cli import main\n"
        f"try:\n    main({[*argv, '--help']!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY_FOR_HELP!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
