"""The child-process protocol of `swreg bench`: each approach runs in a fresh process
(`python -m workers.commands.bench APPROACH MODEL ...`, parsed by `main`), timed from start to
exit with its peak resident memory, and writes its report (and GPU peak) as JSON to `--out`."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from workers.commands.bench.memory import GIB, MemoryCap, watch_peak
from workers.science.evaluation_defaults import DEFAULT_EVAL_TOKENS

# The module `python -m` runs as a child (its __main__ calls `main`).
CHILD_MODULE = "workers.commands.bench"


@dataclass
class ChildRun:
    approach: str
    wall_seconds: float
    returncode: int
    result: dict | None  # the child's report and GPU peak, where it writes them
    peak_host_bytes: int  # the process's peak resident memory (VmHWM, see _timed)
    stderr_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result is not None

    @property
    def report(self) -> dict:
        """The child's report (of a run that is ok)."""
        assert self.result is not None, f"{self.approach} wrote no report"
        return self.result["report"]


def _timed(
    command: list[str], cap: "MemoryCap | None", out: Path, stdout_json: bool = False
) -> tuple[float, int, int, dict | None, str]:
    """Run a command to its end: wall seconds, exit status, peak resident bytes, the JSON it
    wrote, and the end of its stderr.

    The peak is the child's VmHWM, read every PEAK_POLL_SECONDS while it runs (growth in its last
    poll interval before exiting is missed). Not wait4's ru_maxrss: Linux carries the high-water
    mark of the address space a process replaced by exec into its ru_maxrss, and subprocess
    starts children with vfork, whose child borrows this (parent) process's address space until
    it execs, so every child would report at least the bench's own peak (as every run after the
    synthetic checkpoint was generated did: docs/measurements.md#the-merged-code-2026-11-26)."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, preexec_fn=cap.preexec if cap else None
        )
        peak, stop = [0], threading.Event()
        watcher = threading.Thread(target=watch_peak, args=(process.pid, stop, peak), daemon=True)
        watcher.start()
        _, status, _ = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        stop.set()
        watcher.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace")[-2000:]
        result = None
        if stdout_json and process.returncode == 0:
            stdout.seek(0)
            result = {"report": json.loads(stdout.read()), "peak_gpu_bytes": None}
        elif out.is_file():
            result = json.loads(out.read_text())
    return wall, process.returncode, peak[0], result, tail


def run_approach(
    approach: str,
    model_dir: Path,
    device: str,
    eval_tokens: int,
    cap: MemoryCap | None = None,
    validate: bool = True,
) -> ChildRun:
    """Run one approach in a fresh process and time it from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [
            sys.executable,
            "-m",
            CHILD_MODULE,
            approach,
            str(model_dir),
            "--device",
            device,
            "--eval-tokens",
            str(eval_tokens),
            "--out",
            str(out),
            *([] if validate else ["--no-validate"]),
        ]
        wall, code, peak, result, tail = _timed(command, cap, out)
    return ChildRun(approach, wall, code, result, peak, tail)


def run_detect_command(model_dir: Path, device: str) -> ChildRun:
    """`swreg detect MODEL --no-validate --json`, as a user runs it."""
    command = [
        sys.executable,
        "-m",
        "registry.cli",
        "detect",
        str(model_dir),
        "--no-validate",
        "--json",
        "--device",
        device,
    ]
    wall, code, peak, result, tail = _timed(command, None, Path("/nonexistent"), stdout_json=True)
    return ChildRun("swreg detect", wall, code, result, peak, tail)


def _child(
    approach: str, model_dir: str, device: str, eval_tokens: int, out: str, validate: bool
) -> None:
    """Entry point of a timed child process."""
    import torch

    from workers.science.pipeline.steps import AnalysisOptions

    options = AnalysisOptions(
        device=device,
        eval_tokens=eval_tokens,
        validate=validate,
        sequential=approach != "swreg-exhaustive",
    )
    if approach == "naive":
        from workers.science.pipeline.naive import analyse_naive as run
    else:
        from workers.science.pipeline.sweep import analyse as run
    report = run(model_dir, options).as_json_dict()
    gpu_peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    Path(out).write_text(json.dumps({"report": report, "peak_gpu_bytes": gpu_peak}))


def _fetch_child(repo_id: str, sha: str, cache: str, out: str) -> None:
    from workers.sources.hub import fetch_hub

    fetched = fetch_hub(repo_id, sha, max_bytes=64 * GIB, cache_dir=Path(cache))
    Path(out).write_text(
        json.dumps(
            {
                "repo_bytes": fetched.repo_bytes,
                "fetched_bytes": fetched.selected_bytes,
                "fetched_over_repo": fetched.selected_bytes / fetched.repo_bytes,
                "fetched_files": [f["name"] for f in fetched.files],
            }
        )
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="swreg bench child process")
    parser.add_argument("approach", choices=["swreg", "swreg-exhaustive", "naive", "fetch"])
    parser.add_argument("model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-tokens", type=int, default=DEFAULT_EVAL_TOKENS)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--revision")
    parser.add_argument("--cache")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.approach == "fetch":
        _fetch_child(args.model, args.revision, args.cache, args.out)
    else:
        _child(
            args.approach, args.model, args.device, args.eval_tokens, args.out, not args.no_validate
        )
