"""Reads from anywhere: every read command (lookup, list, export, jobs, jobs show) with `--api URL`
or SWREG_API prints what it prints from the local database, byte for byte, over real HTTP to a
real `swreg serve` on the same registry."""

import copy

import pytest
from click.testing import CliRunner

from registry.cli import main
from registry.database import transaction
from registry.readers import API_ENV
from registry.superweights import service
from tests.helpers import SHA_A, add_jobs, free_port, live_server, smollm2_like_report

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"
# The interval the verdict of the verified weight was decided on (as validation records it).
INTERVAL = {"low": 12.1, "high": 25.31, "confidence": 0.983, "blocks": 4}


def run(*args: str, **env: str):
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def server(cli_env, db_sessions, published, monkeypatch):
    report = copy.deepcopy(smollm2_like_report())
    report["super_weights"][0]["evidence"]["validation"]["ablated"]["interval"] = INTERVAL
    with transaction(db_sessions) as session:
        service.record_report(
            session, model_id=SMOL, revision=SHA_A, revision_kind="commit", report=report
        )
    add_jobs(db_sessions, 3)
    monkeypatch.delenv(API_ENV, raising=False)
    with live_server(cli_env) as address:
        yield address


READS = [
    ("lookup", SMOL),
    ("lookup", SMOL, "--json"),
    ("lookup", "allenai/OLMo-1B-0724-hf", "--revision", "unknown"),
    ("list",),
    ("list", "--json", "--limit", "3", "--offset", "2"),
    ("list", "--limit", "3", "--after", "google/gemma-7b"),
    ("list", "--search", "llama"),
    ("export", "--generated-at", "2026-01-01T00:00:00Z"),
    ("jobs",),
    ("jobs", "--json", "--state", "queued", "--limit", "2"),
    ("jobs", "show", "2"),
    ("jobs", "show", "2", "--json"),
]


def test_every_read_prints_the_same_from_a_server(server):
    for args in READS:
        local = run(*args)
        assert local.exit_code == 0, (args, local.output)
        remote = run(*args, "--api", server)
        assert (remote.exit_code, remote.stdout) == (0, local.stdout), args
        via_env = run(*args, **{API_ENV: server})
        assert (via_env.exit_code, via_env.stdout) == (0, local.stdout), args


def test_the_index_of_a_server_is_its_exact_bytes(server, tmp_path):
    target = tmp_path / "index.json"
    assert run("export", "--api", server, "-o", str(target)).exit_code == 0
    local = run("export")
    # Unpinned, both carry the time of the registry's last change: the same bytes.
    assert target.read_text(encoding="utf-8") == local.stdout


def test_jobs_show_under_the_group_option_reads_the_server(server, monkeypatch):
    # The local database is left behind: a wrong URL would fail, the server answers.
    monkeypatch.setenv("SWREG_DATABASE_URL", "sqlite:////nonexistent/registry.db")
    result = run("jobs", "--api", server, "show", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("job 1: queued")


def test_lookup_prints_the_ratio_and_interval_of_validated_weights(server):
    result = run("lookup", SMOL, "--api", server)
    lines = result.stdout.splitlines()
    assert "zeroed" in lines[1].split()
    verified = next(line for line in lines if line.strip().startswith("verified"))
    assert "×18.75 (12.10–25.31)" in verified
    rejected = next(line for line in lines if line.strip().startswith("rejected"))
    assert "×1.00" in rejected
    published = run("lookup", "huggyllama/llama-7b", "--api", server).stdout.splitlines()[2]
    assert published.split()[6] == "-"  # never ablated: no ratio


def test_errors_from_a_server_are_the_local_ones(server):
    for args in [("lookup", "nobody/nothing"), ("jobs", "show", "99")]:
        local, remote = run(*args), run(*args, "--api", server)
        assert (remote.exit_code, remote.stderr) == (local.exit_code, local.stderr), args
        assert remote.exit_code == 1 and remote.stderr.count("\n") == 1


def test_a_server_that_does_not_answer_is_one_line(cli_env):
    address = f"http://127.0.0.1:{free_port()}"
    result = run("lookup", SMOL, "--api", address)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot reach the swreg API at {address}/api/v1")
    assert result.stderr.count("\n") == 1


def test_an_address_that_is_not_http_is_refused_before_anything_is_read(cli_env):
    result = run("list", "--api", "ftp://example.org")
    assert result.exit_code == 2
    assert "expected http(s)://HOST[:PORT]" in result.stderr and result.stderr.count("\n") == 1
