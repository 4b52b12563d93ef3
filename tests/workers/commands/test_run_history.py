"""A local `swreg detect` says how long the whole run has left from what earlier runs on weights
of a similar size took (kept in a small file), and keeps that file whole and bounded."""

import json
import subprocess
import sys

import pytest

from tests.helpers import python_env
from workers.commands import run_history
from workers.commands.run_history import HISTORY_RUNS, Run, load, measured_for, record, run_kind
from workers.fixtures.planted import build_planted_model

MB = 1_000_000
KIND = run_kind("detect", eval_tokens=1024, validate=True)


def test_only_runs_of_its_kind_on_weights_of_a_similar_size_measure_a_run_scaled_to_its_size():
    assert KIND == "detect eval_tokens=1024 validate=True"
    runs = [
        Run(KIND, 100 * MB, {"detect": 10.0, "total": 50.0}),
        Run(KIND, 150 * MB, {"detect": 18.0, "total": 60.0}),
        Run(KIND, 1 * MB, {"detect": 0.1, "total": 5.0}),  # tiny: no measure of a larger model
        # Other options, other work: 4x the evaluation tokens.
        Run(run_kind("detect", eval_tokens=4096, validate=True), 120 * MB, {"total": 200.0}),
    ]
    measured = measured_for(runs, KIND, 120 * MB)
    assert measured is not None and measured.runs == 2
    # 10 s scaled by 1.2 and 18 s by 0.8: 12 and 14.4, median 13.2; totals 60 and 48.
    assert measured.seconds["detect"] == pytest.approx(13.2)
    assert measured.seconds["total"] == pytest.approx(54.0)
    assert measured.described_as.format(n=2) == "last 2 local runs on weights of a similar size"
    assert measured_for(runs, KIND, 10 * MB) is None
    assert measured_for(runs, run_kind("quantize-check"), 120 * MB) is None


def test_the_file_keeps_the_newest_runs_and_a_file_not_ours_is_ignored(tmp_path):
    path = tmp_path / "cache" / "runs.json"
    for i in range(HISTORY_RUNS + 3):
        record(path, KIND, MB, {"load": float(i)}, 10.0 + i)
    runs = load(path)
    assert len(runs) == HISTORY_RUNS
    assert runs[-1].seconds == {"load": float(HISTORY_RUNS + 2), "total": float(HISTORY_RUNS + 12)}
    assert [p.name for p in path.parent.iterdir()] == ["runs.json"]  # no temporary left behind
    for hostile in [
        "not json",
        '{"a": 1}',
        '[{"weight_bytes": "1", "seconds": {}}, 3]',
        '[{"kind": "detect", "weight_bytes": 5, "seconds": {"x": true, "y": -1}}]',
        '[{"kind": 3, "weight_bytes": 5, "seconds": {"x": 1}}]',
    ]:
        path.write_text(hostile)
        assert load(path) == []
    path.write_bytes(b"[" + b" " * (run_history.MAX_FILE_BYTES + 1) + b"]")
    assert load(path) == []
    record(path, KIND, MB, {"load": 1.0}, 2.0)  # a file not ours is replaced, not appended to
    assert len(load(path)) == 1


def test_a_file_that_cannot_be_written_never_fails_the_run(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    record(blocked / "runs.json", KIND, MB, {"load": 1.0}, 2.0)  # its folder is a file
    assert load(blocked / "runs.json") == []


def test_detect_says_the_whole_run_s_time_left_from_earlier_runs(tmp_path):
    """Earlier runs of this size took 500 s: from its first report the run says about that much
    is left (not a terminal: plain `all` lines), then records its own times for the next run."""
    model = build_planted_model("llama", tmp_path / "tiny", num_layers=3).path
    size = run_history.weight_bytes(model)
    history = tmp_path / "runs.json"
    kind = run_kind(
        "detect", device="cpu", validate=True, prompts=0, eval_tokens=1024, sequential=True
    )
    seconds = {"load": 100.0, "detect": 100.0, "validate": 200.0, "score": 100.0}
    record(history, kind, size, seconds, 500.0)
    result = subprocess.run(
        [sys.executable, "-m", "registry.cli", "detect", str(model), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env=python_env(SWREG_RUN_HISTORY_FILE=str(history)),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    overall = [line for line in result.stderr.splitlines() if line.startswith("all ")]
    assert overall, result.stderr
    first = int(overall[0].split("~")[1].split(" s left")[0])
    assert 450 <= first <= 500, overall  # 500 s usual, less the seconds run so far
    assert "(the pace of" not in overall[0]  # the whole run, not a stage's
    runs = load(history)
    assert len(runs) == 2 and runs[-1].weight_bytes == size
    report_total = json.loads(result.stdout)["timings"]["total"]
    # What the person waited for: imports included, so at least the analysis's own total.
    assert runs[-1].seconds["total"] >= report_total
    assert set(runs[-1].seconds) >= {"load", "detect", "validate", "score", "total"}
