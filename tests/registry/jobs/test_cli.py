"""`swreg submit`, `swreg jobs`, `swreg worker` as a user runs them."""

import json
import subprocess
import sys
import threading

import pytest
import torch
from click.testing import CliRunner

from registry.cli import main
from registry.migrate import open_registry
from tests.helpers import REPO, make_checkpoint, python_env
from workers.fixtures.hf_cache import install_into_hf_cache
from workers.fixtures.planted import build_planted_model
from workers.worker.loop import Worker, WorkerConfig


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_submit_work_wait_and_show_a_local_directory(cli_env, runner, tmp_path):
    model = build_planted_model("llama", tmp_path / "tiny", num_layers=2).path
    first = runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny"])
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("queued: job 1, me/tiny@sha256:")
    again = runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny"])
    assert again.stdout.startswith("already queued: job 1,")

    listed = runner.invoke(main, ["jobs", "--state", "queued", "--json"])
    (job,) = json.loads(listed.stdout)
    assert (job["id"], job["state"], job["source"]) == (1, "queued", "local")

    worked = runner.invoke(main, ["worker", "--once"])
    assert worked.exit_code == 0, worked.output

    waited = runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny", "--wait"])
    assert waited.exit_code == 0, waited.output
    assert "job 1: succeeded" in waited.stdout and "timings   fetch" in waited.stdout
    shown = runner.invoke(main, ["jobs", "show", "1", "--json"])
    assert json.loads(shown.stdout)["state"] == "succeeded"
    assert "succeeded" in runner.invoke(main, ["jobs"]).stdout
    lookup = runner.invoke(main, ["lookup", "me/tiny", "--json"])
    states = {sw["state"] for sw in json.loads(lookup.stdout)["revisions"][0]["super_weights"]}
    assert "verified" in states


def test_wait_follows_the_job_to_its_end_and_fails_with_it(cli_env, runner, tmp_path, hf_cache):
    model = make_checkpoint(tmp_path / "m", weights=False, extra={"pytorch_model.bin": b"x" * 64})
    install_into_hf_cache(model, hf_cache, REPO)
    timed_out = runner.invoke(main, ["submit", REPO, "--wait", "--timeout", "0.5"])
    assert timed_out.exit_code == 1 and "job 1 is still queued after 0.5 s" in timed_out.stderr

    # A worker in the background, as `make run` has one.
    worker = Worker(open_registry(), WorkerConfig(poll_seconds=0.1))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        waited = runner.invoke(main, ["submit", REPO, "--wait"])
    finally:
        worker.stop_requested.set()
        thread.join()
    # (The worker may have taken job 1 before this submission, or even failed it, in which case
    # the submission queued the revision again: either way `--wait` ends with the failure.)
    assert waited.exit_code == 3
    assert "failed: " in waited.stderr
    assert "pickle-only checkpoint (never unpickled)" in waited.stderr


def test_submission_refusals_are_one_line(cli_env, runner, hf_cache, tmp_path):
    unknown = runner.invoke(main, ["submit", "acme/nothing-here"])
    assert unknown.exit_code == 1
    assert (
        unknown.stderr.strip().count("\n") == 0 and "not in the local Hub cache" in unknown.stderr
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = runner.invoke(main, ["submit", str(empty)])
    assert refused.exit_code != 0 and "no .safetensors weight files" in refused.stderr
    assert runner.invoke(main, ["jobs", "--json"]).stdout.strip() == "[]"


def test_wait_shows_the_stages_as_the_worker_goes(cli_env, runner, tmp_path, monkeypatch):
    """Not a terminal: one line per state, and the job's stage and progress as they move."""
    from registry.jobs import cli as jobs_cli

    monkeypatch.setattr(jobs_cli, "WAIT_POLL_SECONDS", 0.05)
    model = build_planted_model("llama", tmp_path / "tiny", num_layers=3).path
    worker = Worker(open_registry(), WorkerConfig(poll_seconds=0.05, progress_seconds=0.0))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        waited = runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny", "--wait"])
    finally:
        worker.stop_requested.set()
        thread.join()
    assert waited.exit_code == 0, waited.output
    lines = waited.stderr.splitlines()
    assert lines[-1].startswith("job 1: succeeded")
    stages = [line.split()[2] for line in lines if line.startswith("job 1: ") and "/" in line]
    order = ["fetch", "load", "detect", "validate", "score"]
    assert stages and all(s in order for s in stages), lines
    assert [order.index(s) for s in stages] == sorted(order.index(s) for s in stages)
    assert stages[-1] == "score"


# --- what MODEL names: a local folder or a Hub id ---------------------------------------------


def test_each_kind_of_wrong_name_gets_its_own_line(cli_env, runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a folder")
    cases = {
        ("./does-not-exist",): "error: no such folder: ./does-not-exist (a local model is a "
        "folder; a Hub model is written namespace/name)",
        ("./does-not-exist", "--model-id", "me/x"): "error: no such folder: ./does-not-exist",
        ("~/swreg-surely-not-here",): "error: no such folder: ~/swreg-surely-not-here",
        ("model.safetensors",): "error: model.safetensors is a file: a local model is the folder "
        "that holds its config.json and *.safetensors files",
        ("acme/tiny/extra",): "error: invalid model id 'acme/tiny/extra': expected `name` or "
        "`namespace/name`",
        ("acme/tiny", "--model-id", "me/x"): "error: --model-id applies to local folders; "
        "acme/tiny is read as a Hub model (no folder of that name here)",
        (str(tmp_path), "--revision", "main"): f"error: --revision applies to Hub models; "
        f"{tmp_path} is a local folder",
    }
    for args, start in cases.items():
        result = runner.invoke(main, ["submit", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(start), (args, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stdout == "", (args, result.output)
    assert (
        "no folder of that name here either"
        in runner.invoke(main, ["submit", "acme/tiny/extra"]).stderr
    )
    assert runner.invoke(main, ["jobs", "--json"]).stdout.strip() == "[]"


def test_detect_and_quantize_check_read_names_the_same_way(runner, tmp_path):
    for command in ("detect", "quantize-check"):
        result = runner.invoke(main, [command, str(tmp_path / "nowhere")])
        assert result.exit_code == 2 and result.stderr.startswith("error: no such folder: ")


# Runs a swreg command and, as the process exits, says whether torch was ever imported.
TORCH_LOADED_AT_EXIT = (
    "import atexit, sys; "
    "atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules, file=sys.stderr)); "
    "from registry.cli import main; main(args=sys.argv[1:])"
)


def test_a_missing_folder_is_refused_before_torch_loads(tmp_path):
    for command in ("detect", "quantize-check"):
        run = subprocess.run(
            [sys.executable, "-c", TORCH_LOADED_AT_EXIT, command, str(tmp_path / "nowhere")],
            capture_output=True,
            text=True,
            timeout=120,
            env=python_env(),
        )
        assert run.returncode == 2, run.stderr
        error, loaded = run.stderr.splitlines()
        assert error.startswith("error: no such folder: "), error
        assert loaded == "torch loaded: False", command


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU asked for")
def test_detect_and_quantize_check_refuse_a_gpu_the_machine_lacks(runner, planted_models):
    model = planted_models("llama").path
    for command in ("detect", "quantize-check"):
        result = runner.invoke(main, [command, str(model), "--device", "cuda"])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr == "error: device cuda: no CUDA device is available\n", command


def test_a_folder_already_analysed_is_reported_not_queued(cli_env, runner, tmp_path):
    model = build_planted_model("llama", tmp_path / "tiny", num_layers=2).path
    assert runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny"]).exit_code == 0
    worked = runner.invoke(main, ["worker", "--once"])
    assert worked.exit_code == 0, worked.output
    revision = json.loads(runner.invoke(main, ["jobs", "show", "1", "--json"]).stdout)["revision"]
    assert revision.startswith("sha256:")

    # The same weights without --model-id (they would be local/tiny), and under another id.
    for extra in ([], ["--model-id", "me/other"]):
        again = runner.invoke(main, ["submit", str(model), *extra])
        assert again.exit_code == 0, again.output
        assert again.stdout.splitlines() == [
            f"already analysed: {model} holds the weights recorded as me/tiny @ {revision}; "
            "not queued (--force to analyse it again)",
            f"  see: swreg lookup me/tiny --revision {revision}",
        ]
    as_json = runner.invoke(main, ["submit", str(model), "--json"])
    known = {"job": None, "revision": revision, "known_as": ["me/tiny"]}
    assert json.loads(as_json.stdout) == known
    assert len(json.loads(runner.invoke(main, ["jobs", "--json"]).stdout)) == 1

    # Under the id it is known by, the submission answers with that id's job, as before.
    same = runner.invoke(main, ["submit", str(model), "--model-id", "me/tiny"])
    assert same.stdout.startswith("already succeeded: job 1, me/tiny@sha256:")
    # --force queues the same weights under a new id.
    forced = runner.invoke(main, ["submit", str(model), "--force"])
    assert forced.stdout.startswith(f"queued: job 2, local/tiny@{revision}")
