"""What to install for a command this install of swreg cannot run.

The light client (`pip install swreg`) brings only what HTTP and index reads need; the registry
server and the workers are extras (`swreg[server]`, `swreg[worker]`, `swreg[all]`). A command
that needs a missing one fails on its first import: this finds the extra that brings the missing
module, from the installed distribution's own metadata (so it says what pyproject.toml says).
"""

import re
from importlib.metadata import PackageNotFoundError, requires

DISTRIBUTION = "swreg"
_EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _normal(name: str) -> str:
    """A distribution or module name compared as packaging compares names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_for(module: str) -> str | None:
    """The extra of swreg that brings the top-level `module` ("server", "worker"), "" when the
    core dependencies do, None when swreg's metadata does not name it (or swreg is not
    installed)."""
    wanted = _normal(module.split(".")[0])
    try:
        requirements = requires(DISTRIBUTION) or []
    except PackageNotFoundError:
        return None
    found = None
    for requirement in requirements:
        name = _NAME.match(requirement)
        if name is None or _normal(name.group(1)) != wanted:
            continue
        extra = _EXTRA.search(requirement)
        if extra is None:
            return ""
        # The narrowest extra that brings it (server before all, worker before test).
        if found is None or extra.group(1) in ("server", "worker"):
            found = extra.group(1)
    return found


# Each extra brings those before it (worker requires server).
EXTRAS_BY_SIZE = ("", "server", "worker")


def install_hint(exc: ModuleNotFoundError, command_extra: str | None = None) -> str | None:
    """One line for a module this install lacks, or None when it is no dependency of swreg.
    The extra named is the larger of the module's and the command's (`detect` needs the
    worker extra even where its first missing module is a server one)."""
    if not exc.name:
        return None
    extra = extra_for(exc.name)
    if extra is None:
        return None
    if extra in EXTRAS_BY_SIZE and command_extra in EXTRAS_BY_SIZE:
        extra = max(extra, command_extra, key=EXTRAS_BY_SIZE.index)
    if extra == "":
        return f"{exc.name} is missing from this install of swreg: reinstall it (pip install swreg)"
    remote = " (or read from a swreg server: --api URL)" if extra == "server" else ""
    return (
        f"this command needs {exc.name.split('.')[0]}, which this install of swreg lacks: "
        f"pip install 'swreg[{extra}]'{remote}"
    )
