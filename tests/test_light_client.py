"""The light client: `pip install swreg` (or `swreg[client]`) brings only what HTTP and index
reads need, and those reads work with nothing else installed.

A fresh virtual environment gets the wheel built from this checkout and, beside it, only the
distributions the wheel's core requirements need (their closure, resolved from the installed
metadata and linked into one folder: nothing is downloaded). torch, SQLAlchemy, FastAPI and the
rest are then not importable there at all, and the test reads the published index, a real
`swreg serve` over HTTP (the Python client and `swreg lookup --api`), and asks a server command
for what it lacks.
"""

import json
import os
import subprocess
import textwrap
import zipfile
from email import message_from_bytes
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from registry.database import transaction
from registry.index import service as index_service
from tests.helpers import live_server
from tests.test_wheel import venv_with_wheel, wheel  # noqa: F401 (the module's wheel fixture)
from workers.contract.resources import PUBLISHED_INDEX_PATH

pytestmark = pytest.mark.slow

LIGHT = {"pydantic", "click", "httpx", "jsonschema"}
HEAVY = [
    "torch",
    "transformers",
    "sqlalchemy",
    "fastapi",
    "uvicorn",
    "alembic",
    "psycopg",
    "matplotlib",
    "huggingface_hub",
    "safetensors",
    "numpy",
]


def _metadata(wheel_path: Path):
    with zipfile.ZipFile(wheel_path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return message_from_bytes(archive.read(name))


def _core_requirements(wheel_path: Path) -> list[Requirement]:
    found = [Requirement(r) for r in _metadata(wheel_path).get_all("Requires-Dist")]
    return [r for r in found if r.marker is None or r.marker.evaluate({"extra": ""})]


def _closure(requirements: list[Requirement]) -> set[str]:
    """Every distribution the requirements need, as this environment resolved them."""
    seen: set[str] = set()
    todo = [r.name for r in requirements]
    while todo:
        name = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # an optional dependency this environment does not have either
        key = dist.metadata["Name"].lower()
        if key in seen:
            continue
        seen.add(key)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _light_site(names: set[str], folder: Path) -> Path:
    """A folder holding only those distributions (links to their installed files)."""
    folder.mkdir()
    for name in names:
        dist = distribution(name)
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            source = Path(str(dist.locate_file(top)))
            if top in ("..", "bin") or not source.exists() or (folder / top).exists():
                continue
            (folder / top).symlink_to(source)
    return folder


@pytest.fixture(scope="module")
def light(wheel, tmp_path_factory) -> Path:  # noqa: F811 (the imported fixture)
    """A fresh venv with swreg from the wheel and only its core dependencies; its bin folder."""
    root = tmp_path_factory.mktemp("light")
    site = _light_site(_closure(_core_requirements(wheel)), root / "site")
    return venv_with_wheel(wheel, root / "venv", str(site), "light-dependencies.pth")


def _run(bin_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SWREG_API")}
    environment.update(HF_HUB_OFFLINE="1", **env)
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_core_requirements_are_the_light_ones(wheel):  # noqa: F811
    assert {r.name.lower() for r in _core_requirements(wheel)} == LIGHT
    extras = set(_metadata(wheel).get_all("Provides-Extra"))
    assert {"client", "server", "worker", "all", "test"} <= extras


def test_nothing_heavy_is_there_to_import(light, tmp_path):
    probe = "; ".join(
        ["import importlib.util", f"print([m for m in {HEAVY!r} if importlib.util.find_spec(m)])"]
    )
    result = _run(light, tmp_path, "python", "-c", probe)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


CLIENT_READS = textwrap.dedent("""
    import sys, warnings
    import swreg

    published = swreg.Index.published()
    print(published.lookup("huggyllama/llama-7b").revisions[0].super_weights[0].index)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = swreg.coordinates_for("meta-llama/Llama-2-7b-hf", index=published)
    print(fallback.revision, [sw.index for sw in fallback], caught[0].category.__name__)
    print(fallback.note)
    with swreg.Client(sys.argv[1]) as api:
        print([sw.index for sw in api.lookup("allenai/OLMo-1B-0724-hf").revisions[0].super_weights])
        found = swreg.coordinates_for("huggyllama/llama-7b", "unknown", api=api)
        print(found.source, [sw.index for sw in found])
        api.lookup("nobody/nothing")
""")


def test_reads_work_with_only_the_light_dependencies(light, tmp_path, db_url, db_sessions):
    with transaction(db_sessions) as session:
        index_service.import_document(session, index_service.load_file(PUBLISHED_INDEX_PATH))
    with live_server(db_url) as address:
        result = _run(light, tmp_path, "python", "-c", CLIENT_READS, address)
        lookup = _run(light, tmp_path, "swreg", "lookup", "huggyllama/llama-7b", "--api", address)
        via_env = _run(light, tmp_path, "swreg", "list", "--json", SWREG_API=address)
    lines = result.stdout.splitlines()
    assert lines[0] == "[3968, 7003]"
    assert lines[1] == "unknown [[2533, 7890]] PublishedFallback"
    assert lines[2].startswith("meta-llama/Llama-2-7b-hf could not be pinned to a commit (")
    assert "huggingface_hub is not installed: pip install 'swreg[worker]'" in lines[2]
    assert lines[3] == "[[1764, 1710], [1764, 8041], [1764, 8041]]"
    assert lines[4] == f"{address}/api/v1 [[3968, 7003]]"
    # The one error left for the end: its traceback names the public class.
    assert result.returncode == 1
    assert (
        result.stderr.rstrip().splitlines()[-1]
        == "swreg.errors.ApiNotFound: model not in the registry: nobody/nothing"
    )
    assert lookup.returncode == 0, lookup.stderr
    assert "model.layers.2.mlp.down_proj.weight  [3968, 7003]" in lookup.stdout
    assert via_env.returncode == 0, via_env.stderr
    assert json.loads(via_env.stdout)["total"] >= 13


def test_an_index_file_validates_without_the_server_stack(light, tmp_path):
    copy = tmp_path / "index.json"
    document = json.loads(PUBLISHED_INDEX_PATH.read_text())
    copy.write_text(json.dumps(document))
    script = f"import swreg; print(len(swreg.Index.load({str(copy)!r}).model_ids()))"
    assert _run(light, tmp_path, "python", "-c", script).stdout.strip() == str(
        len({m["model_id"] for m in document["models"]})
    )
    document["models"][0]["super_weights"][0]["index"] = "bad"
    copy.write_text(json.dumps(document))
    refused = _run(light, tmp_path, "python", "-c", script)
    assert refused.stderr.rstrip().splitlines()[-1].startswith("swreg.InvalidInput: invalid ")


def test_a_server_command_says_which_extra_to_install(light, tmp_path):
    for args, extra in [
        (["serve"], "server"),
        (["lookup", "huggyllama/llama-7b"], "server"),
        (["detect", "acme/tiny-model"], "worker"),
    ]:
        result = _run(light, tmp_path, "swreg", *args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error: this command needs "), result.stderr
        assert f"pip install 'swreg[{extra}]'" in result.stderr and result.stderr.count("\n") == 1
