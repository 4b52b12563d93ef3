"""The built wheel works without the checkout: installed into a fresh virtual environment and run
from another folder, `swreg setup` migrates and loads the published index (both shipped as
package data), `swreg lookup` reads it back and `swreg detect` analyses a model (the evaluation
text is package data too).

The fresh environment gets swreg from the wheel alone; its third-party dependencies come from
this test's environment through a path entry (installing torch and the rest again would take
minutes). That those dependencies are all declared is checked separately, against the wheel's
metadata.
"""

import ast
import email
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT
from workers.fixtures.planted import build_planted_model


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("swreg-*.whl")
    return built


def venv_with_wheel(wheel: Path, venv: Path, dependencies: str, pth: str) -> Path:
    """A fresh venv (no pip) with only `wheel` installed in it, and `dependencies` (a folder of
    installed packages) appended to its path by the .pth file `pth`; returns its bin folder.
    Nothing of this checkout is on its path (a PYTHONPATH would make pip see swreg installed)."""
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=clean
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        env=clean,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=clean,
    ).stdout.strip()
    # Appended after the venv's own site-packages: swreg itself still comes from the wheel.
    Path(purelib, pth).write_text(f"{dependencies}\n")
    return venv / "bin"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed, the test environment's packages beside it;
    returns its bin folder."""
    venv = tmp_path_factory.mktemp("venv")
    return venv_with_wheel(wheel, venv, sysconfig.get_paths()["purelib"], "dependencies.pth")


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["SWREG_DATABASE_URL"] = f"sqlite:///{cwd / 'registry.db'}"
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_wheel_carries_data_and_migrations(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "workers/contract/data/published_index.json",
        "workers/contract/data/reported_super_experts.json",
        "workers/contract/data/index.schema.json",
        "workers/contract/data/eval/eval_text.txt",
        "registry/migrations/env.py",
        "registry/migrations/versions/0001_registry.py",
        "registry/web/templates/model.html",
        "registry/web/static/job.js",
        "registry/py.typed",
        "swreg/py.typed",
    } <= names


def test_the_installed_wheel_runs_outside_the_checkout(installed, tmp_path):
    where = _run(installed, tmp_path, "python", "-c", "import registry; print(registry.__file__)")
    assert where.returncode == 0, where.stderr
    assert not Path(where.stdout.strip()).is_relative_to(REPO_ROOT)

    setup = _run(installed, tmp_path, "swreg", "setup")
    assert setup.returncode == 0, setup.stderr
    assert "33 coordinates" in setup.stdout

    lookup = _run(installed, tmp_path, "swreg", "lookup", "huggyllama/llama-7b", "--json")
    assert lookup.returncode == 0, lookup.stderr
    coordinates = json.loads(lookup.stdout)["revisions"][0]["super_weights"]
    assert [sw["index"] for sw in coordinates] == [[3968, 7003]]

    model = build_planted_model("llama", tmp_path / "planted", num_layers=2)
    detect = _run(
        installed, tmp_path, "swreg", "detect", str(model.path), "--json", "--eval-tokens", "128"
    )
    assert detect.returncode == 0, detect.stderr
    report = json.loads(detect.stdout)
    assert report["eval"]["path"] == "data/eval/eval_text.txt"
    verified = {tuple(sw["index"]) for sw in report["super_weights"] if sw["state"] == "verified"}
    assert verified == {model.stored_index(p) for p in model.plants}


def _third_party_imports() -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for package in ("registry", "workers"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                found.update(n.split(".")[0] for n in names)
    return {n for n in found if n not in stdlib and n not in ("registry", "workers", "swreg")}


def test_every_third_party_import_is_a_declared_dependency(wheel):
    metadata = email.message_from_bytes(
        zipfile.ZipFile(wheel).read("swreg-0.1.0.dist-info/METADATA")
    )
    # The light core and the extras that make the full install (the test extra is for tests).
    declared = {
        re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        for requirement in metadata.get_all("Requires-Dist")
        if "extra ==" not in requirement or re.search(r"extra == .(server|worker).", requirement)
    }
    providers = packages_distributions()
    missing = {
        name: providers.get(name)
        for name in _third_party_imports()
        if not {d.lower().replace("_", "-") for d in providers.get(name, [])} & declared
    }
    assert missing == {}
