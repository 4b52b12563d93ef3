"""The registry commands, through click's runner and through the installed `swreg` script."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.cli import main
from tests.helpers import other_database_url
from workers.contract.resources import PUBLISHED_INDEX_PATH

OUT_OF_DATE = "error: database schema is out of date: run `swreg db upgrade`\n"
SWREG = str(Path(sys.executable).with_name("swreg"))


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def loaded(cli_env):
    result = run("import", str(PUBLISHED_INDEX_PATH))
    assert result.exit_code == 0, result.output
    return cli_env


def test_lookup_json_is_the_http_document(loaded):
    result = run("lookup", "huggyllama/llama-7b", "--json")
    assert result.exit_code == 0
    with TestClient(create_app(loaded)) as client:
        assert json.loads(result.stdout) == client.get("/api/v1/models/huggyllama/llama-7b").json()


def test_lookup_table(loaded):
    result = run("lookup", "huggyllama/llama-7b")
    assert result.exit_code == 0
    assert "huggyllama/llama-7b @ unknown" in result.stdout
    assert "model.layers.2.mlp.down_proj.weight  [3968, 7003]" in result.stdout
    assert "citation: Yu, Wang, Shan, Reed, Wan." in result.stdout


def test_lookup_errors_are_one_line(loaded):
    result = run("lookup", "nobody/nothing")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: model not in the registry: nobody/nothing\n",
    )
    result = run("lookup", "huggyllama/llama-7b", "--revision", "main")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: invalid revision 'main'")


def test_list(loaded):
    result = run("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "revisions", "super", "weights", "states"]
    assert lines[-1] == "13 models"
    assert any(
        line.startswith("microsoft/Phi-3-mini-4k-instruct") and "6 published" in line
        for line in lines
    )


def test_import_twice_and_export_round_trip(loaded, tmp_path, request, monkeypatch):
    out = tmp_path / "index.json"
    result = run("export", "-o", str(out), "--generated-at", "2026-01-01T00:00:00Z")
    assert result.exit_code == 0
    first = out.read_text()
    assert json.loads(first)["meta"]["generated_at"] == "2026-01-01T00:00:00Z"
    # Importing the same file again changes nothing.
    again = run("import", str(PUBLISHED_INDEX_PATH))
    assert again.stdout.endswith("(0 new, 0 updated, 33 unchanged)\n")
    assert run("export", "--generated-at", "2026-01-01T00:00:00+00:00").stdout == first
    assert (
        run("export", "--generated-at", "yesterday").stderr
        == "error: not an ISO 8601 time: 'yesterday'\n"
    )

    # export -> import into an empty database (of the same kind) -> export: the same bytes.
    other = other_database_url(loaded, request, tmp_path)
    from registry.settings import get_settings

    monkeypatch.setenv("SWREG_DATABASE_URL", other)
    get_settings.cache_clear()
    assert run("db", "upgrade").exit_code == 0
    assert run("list").stdout.splitlines()[-1] == "0 models"
    imported = run("import", str(out))
    assert imported.stdout.endswith("(33 new, 0 updated, 0 unchanged)\n"), imported.output
    assert run("export", "--generated-at", "2026-01-01T00:00:00Z").stdout == first


def test_invalid_import_is_one_line_and_writes_nothing(cli_env, tmp_path):
    document = json.loads(PUBLISHED_INDEX_PATH.read_text())
    document["models"][3]["super_weights"][1]["index"] = [1, -2]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    result = run("import", str(bad))
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: invalid {bad}: at /models/3/super_weights/1/index/1: -2 is less than the minimum of 0\n"
    )
    assert run("list").stdout.splitlines()[-1] == "0 models"


def test_retract(loaded):
    args = [
        "--revision",
        "unknown",
        "--tensor",
        "model.layers.2.mlp.down_proj.weight",
        "--index",
        "3968,7003",
    ]
    result = run("retract", "huggyllama/llama-7b", *args, "--reason", "test retraction")
    assert result.exit_code == 0, result.output
    sw = json.loads(run("lookup", "huggyllama/llama-7b", "--json").stdout)["revisions"][0][
        "super_weights"
    ][0]
    assert sw["state"] == "retracted" and sw["provenance"]["retraction_reason"] == "test retraction"
    missing = run("retract", "huggyllama/llama-7b", *args[:-1], "1,2", "--reason", "x")
    assert missing.exit_code == 1 and "no coordinate" in missing.stderr


def test_retract_a_super_expert(loaded):
    from workers.contract.resources import REPORTED_SUPER_EXPERTS_PATH

    assert run("import", str(REPORTED_SUPER_EXPERTS_PATH)).exit_code == 0
    args = ["Qwen/Qwen3-30B-A3B", "--revision", "unknown", "--super-expert", "2,92"]
    result = run("retract", *args, "--reason", "test retraction")
    assert result.exit_code == 0, result.output
    assert result.stdout == "retracted Qwen/Qwen3-30B-A3B @ unknown super expert 92 of layer 2\n"
    found = json.loads(run("lookup", "Qwen/Qwen3-30B-A3B", "--json").stdout)["revisions"][0][
        "super_experts"
    ]
    assert [(se["layer"], se["state"]) for se in found] == [
        (1, "reported"),
        (2, "retracted"),
        (3, "reported"),
    ]
    assert found[1]["provenance"]["retraction_reason"] == "test retraction"
    missing = run("retract", *args[:-1], "2,93", "--reason", "x")
    assert missing.exit_code == 1 and "no super expert 93 of layer 2" in missing.stderr
    both = run("retract", *args, "--tensor", "t", "--index", "1,2", "--reason", "x")
    assert (
        both.exit_code == 2
        and "a coordinate (--tensor and --index) or a super expert" in both.stderr
    )
    assert run("retract", *args[:-1], "1", "--reason", "x").exit_code == 2


def test_db_current_and_setup(empty_db_url, monkeypatch):
    from registry.settings import get_settings

    monkeypatch.setenv("SWREG_DATABASE_URL", empty_db_url)
    get_settings.cache_clear()
    try:
        assert "out of date" in run("db", "current").stdout
        assert run("lookup", "huggyllama/llama-7b").stderr == OUT_OF_DATE
        for _ in range(2):  # setup is idempotent
            result = run("setup")
            assert result.exit_code == 0 and "is ready" in result.stdout
        assert "up to date" in run("db", "current").stdout
        # 13 published models, 6 with the super experts Su et al. report
        assert run("list").stdout.splitlines()[-1] == "19 models"
    finally:
        get_settings.cache_clear()


# --- the installed script, as a user runs it --------------------------------------------------


def _swreg(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SWREG_DATABASE_URL": url}
    return subprocess.run([SWREG, *args], env=env, capture_output=True, text=True, timeout=60)


def test_script_lookup_json(loaded):
    result = _swreg("lookup", "huggyllama/llama-7b", "--json", url=loaded)
    assert result.returncode == 0, result.stderr
    (sw,) = json.loads(result.stdout)["revisions"][0]["super_weights"]
    assert sw["index"] == [3968, 7003] and sw["state"] == "published"


def test_script_refuses_an_out_of_date_database(empty_db_url):
    result = _swreg("lookup", "huggyllama/llama-7b", "--json", url=empty_db_url)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", OUT_OF_DATE)
    result = _swreg("serve", "--port", "0", url=empty_db_url)
    assert (result.returncode, result.stderr) == (1, OUT_OF_DATE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_prints_the_address_and_answers(loaded):
    port = _free_port()
    env = {**os.environ, "SWREG_DATABASE_URL": loaded}
    server = subprocess.Popen(
        [SWREG, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = server.stdout.readline()
        assert first.startswith(
            f"swreg serving on http://127.0.0.1:{port}/ (API: http://127.0.0.1:{port}/api/v1"
        ), first
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/models/huggyllama/llama-7b", timeout=5
                )
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.1)
        assert response.status_code == 200
        assert response.json()["revisions"][0]["super_weights"][0]["index"] == [3968, 7003]
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "huggyllama/llama-7b" in page.text
        busy = _swreg("serve", "--port", str(port), url=loaded)
        assert busy.returncode == 1 and busy.stderr.startswith(
            f"error: cannot listen on 127.0.0.1:{port}"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_names_are_checked_on_every_command(loaded, hf_cache, tmp_path):
    for args in (
        ["lookup", "a b"],
        ["lookup", "a/b/c"],
        ["lookup", "a\x01b"],
        [
            "retract",
            "x--y",
            "--revision",
            "unknown",
            "--tensor",
            "t",
            "--index",
            "1,2",
            "--reason",
            "r",
        ],
        ["submit", "acme/tiny", "--revision", "/usr/bin/env"],
        ["submit", "acme/tiny", "--revision", "../blobs/x"],
        ["submit", "a b"],
    ):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: invalid "), (args, result.stderr)
        assert result.stderr.count("\n") == 1


def test_serve_starts_while_the_database_is_down_and_answers_when_it_is_back(tmp_path):
    from registry import migrate

    blocker = tmp_path / "data"
    blocker.write_text("not yet a folder")
    url = f"sqlite:///{blocker}/swreg.db"
    port = _free_port()
    env = {**os.environ, "SWREG_DATABASE_URL": url}
    server = subprocess.Popen(
        [SWREG, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().startswith(f"swreg serving on http://127.0.0.1:{port}")
        assert server.stderr.readline().startswith("warning: cannot open database")
        base = f"http://127.0.0.1:{port}/api/v1"
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"{base}/ready", timeout=10)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert ready.status_code == 503 and ready.headers["retry-after"]
        blocker.unlink()
        blocker.mkdir()
        migrate.upgrade(url)
        assert httpx.get(f"{base}/ready", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
