"""Helpers shared by tests in several folders: detection reports as `swreg detect --json` prints
them, a tiny checkpoint directory, jobs in a queue, subprocess environments. Fixtures live in the
conftest files; plain functions and data live here."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
from safetensors.torch import save_file

from registry.jobs.models import JobSource
from registry.jobs.queue import claim, database_now, enqueue, write_transaction

REPO_ROOT = Path(__file__).resolve().parents[1]
SHA = "0123456789abcdef0123456789abcdef01234567"
SHA_A = "a" * 40
CONTENT = "sha256:" + "c" * 64

# Tokens of the evaluation text scored on tiny models at most: the default budget, four windows,
# so that the sequential evaluation has looks to stop at (and enough positions for a stable
# mean KL).
TINY_EVAL_TOKENS = 1024

# --- detection reports ------------------------------------------------------------------------

RULES = {
    "super_activation_ratio": 100.0,
    "min_contribution_share": 0.1,
    "min_perplexity_ratio": 2.0,
    "max_random_control_ratio": 1.05,
    "random_control_weights": 100,
    "top_k_control_weights": 10,
}
PROMPTS = ["Apple Inc. is a worldwide tech company."]
EVAL = {"path": "data/eval/eval_text.txt", "sha256": "e" * 64, "tokens": 1024, "windows": 1}


def _score(perplexity: float, baseline: float, **extra) -> dict:
    return {
        "perplexity": perplexity,
        "mean_kl_from_baseline": 0.0 if perplexity == baseline else 1.5,
        "stop_word_probability": 0.3,
        "tokens": 1023,
        "ratio": perplexity / baseline,
        **extra,
    }


def coordinate(
    layer: int,
    row: int,
    col: int,
    value: float,
    state: str,
    *,
    ablated: float,
    baseline: float = 20.19,
    tensor: str | None = None,
) -> dict:
    """One coordinate of a report, with detection and validation evidence."""
    reason = f"zeroing it multiplies perplexity by {ablated / baseline:.2f}"
    base = _score(baseline, baseline)
    del base["ratio"]
    return {
        "tensor": tensor or f"model.layers.{layer}.mlp.down_proj.weight",
        "index": [row, col],
        "layer": layer,
        "module": "mlp.down_proj",
        "row": row,
        "col": col,
        "value": value,
        "dtype": "float32",
        "state": state,
        "evidence": {
            "rules": RULES,
            "prompts": PROMPTS,
            "code_version": "0.1.0",
            "detection": {
                "prompts": 1,
                "seen_in_prompts": [0],
                "stability": 1.0,
                "mean_share": 0.7,
                "observations": [
                    {
                        "prompt": 0,
                        "token": 0,
                        "super_activation": 24022.0,
                        "input_activation": 2996.0,
                        "contribution": 17600.0,
                        "share": 0.7,
                        "spike_ratio": 785.0,
                    }
                ],
            },
            "validation": {
                "eval": EVAL,
                "baseline": base,
                "ablated": _score(ablated, baseline),
                "restored": _score(baseline, baseline),
                "controls": {
                    "random": _score(baseline, baseline, weights=100, seed=2411_07191 + layer),
                    "top_k": _score(baseline * 1.05, baseline, k=10, indices=[[1, 2]] * 10),
                },
                "super_activation": {
                    "ablated": [{"tokens": [0], "before": [24022.0], "after": [7006.0]}],
                    "restored": [{"tokens": [0], "before": [24022.0], "after": [24022.0]}],
                },
                "verdict": {"state": state, "reason": reason},
            },
        },
    }


def profile_entry(layer: int, *, spike_layer: int = 11) -> dict:
    """One layer of a report's profile, first prompt and per prompt; `spike_layer` spikes on row
    507 the way SmolLM2's layer 11 does."""
    spike = layer == spike_layer
    prompt = {
        "prompt": 0,
        "max_abs_input": 2996.0 if spike else 3.0,
        "input_token": 0,
        "input_col": 1229 if spike else 1,
        "max_abs_output": 24022.0 if spike else 10.0 + layer,
        "output_token": 0,
        "output_row": 507 if spike else 2,
        "output_percentiles": {"p50": 0.1, "p99": 1.0, "p99.9": 5.0},
        "spike_ratio": None if layer == 0 else (785.0 if spike else 1.0),
        "within_layer_ratio": 2400.0 if spike else 100.0,
    }
    return {
        "layer": layer,
        **{k: v for k, v in prompt.items() if k != "prompt"},
        "max_abs_output_per_prompt": [prompt["max_abs_output"]],
        "spike": spike,
        "prompts": [prompt],
    }


def report(*coordinates: dict, num_layers: int = 30, weight_size: int = 538_000_000) -> dict:
    """A whole detection report holding `coordinates`."""
    profile = [profile_entry(layer) for layer in range(num_layers)]
    return {
        "model": {
            "path": "/models/m",
            "model_type": "llama",
            "architecture": "LlamaForCausalLM",
            "dtype": "float32",
            "num_layers": num_layers,
            "d_model": 576,
            "d_ff": 1536,
            "weight_files": [
                {"name": "model.safetensors", "sha256": "d" * 64, "size": weight_size}
            ],
            "weight_bytes": weight_size,
        },
        "detector": {
            "name": "swreg",
            "version": "0.1.0",
            "device": "cpu",
            "torch": "2.13.0",
            "transformers": "5.24.0",
            "python": "3.11.7",
        },
        "rules": RULES,
        "prompts": PROMPTS,
        "eval": EVAL,
        "profile": profile,
        "super_weights": list(coordinates),
        "timings": {"total": 41.2},
        "bytes_read": weight_size,
    }


def smollm2_like_report() -> dict:
    """SmolLM2's two spikes: layer 11's super weight (verified), layer 28's spike (rejected)."""
    return report(
        coordinate(11, 507, 1229, 5.876, "verified", ablated=378.6),
        coordinate(28, 507, 678, -0.4375, "rejected", ablated=20.19),
    )


def tiny_report() -> dict:
    """The smallest report a worker records: one verified weight of a 2-layer model."""
    return report(
        coordinate(1, 3, 7, 5.0, "verified", ablated=400.0, baseline=10.0),
        num_layers=2,
        weight_size=1000,
    )


# --- a tiny checkpoint directory ----------------------------------------------------------------

REPO = "acme/tiny-model"
# A config transformers accepts (four heads of one dimension each): checkpoint rules read it.
CONFIG = {
    "model_type": "llama",
    "num_hidden_layers": 1,
    "hidden_size": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}


def make_checkpoint(
    directory: Path, *, weights: bool = True, extra: dict[str, bytes] | None = None
) -> Path:
    """A directory that passes the checkpoint file rules (config, tokenizer, safetensors); its
    weights are one 4x4 tensor, not a loadable model."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(CONFIG))
    (directory / "tokenizer.json").write_text("{}")
    if weights:
        save_file(
            {"w": torch.arange(16, dtype=torch.float32).reshape(4, 4)},
            str(directory / "model.safetensors"),
        )
    for name, content in (extra or {}).items():
        (directory / name).write_bytes(content)
    return directory


# --- the queue ---------------------------------------------------------------------------------


def worker_messages(caplog, level: int | None = None) -> list[str]:
    """What the worker logged (logger swreg.worker), as text; only at `level` if given."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "swreg.worker" and (level is None or r.levelno == level)
    ]


def in_thread(function) -> tuple[threading.Thread, dict]:
    """`function()` started in a daemon thread; the dict gets its "value" or its "error"."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def freeze(process: subprocess.Popen, timeout: float = 60.0) -> None:
    """SIGSTOP `process` and return once the kernel shows it stopped. A frozen worker cannot
    finish the job it holds, so what a test reads of that job and the signals it sends next all
    happen while the job is held, however slowly this machine runs the test (SIGCONT resumes)."""
    process.send_signal(signal.SIGSTOP)
    stat = Path(f"/proc/{process.pid}/stat")
    deadline = time.monotonic() + timeout
    # The state is the first field after the command name, which is in parentheses.
    while stat.read_text().rpartition(")")[2].split()[0] != "T":
        assert time.monotonic() < deadline, f"process {process.pid} never stopped"
        time.sleep(0.001)


def freeze_inside_analysis(
    process: subprocess.Popen, read_log, job_id: int, timeout: float = 120.0
) -> bool:
    """Once the worker `process` logs job `job_id`'s load stage, freeze it. True when it froze
    before the job's analysis scored (after scoring it only records the result, so a job frozen
    earlier is still held when it goes on); otherwise it is let go on again and False.
    `read_log()` returns the worker's log so far."""
    deadline = time.monotonic() + timeout
    while f"job {job_id}: load" not in read_log():
        assert process.poll() is None, f"the worker exited:\n{read_log()}"
        assert time.monotonic() < deadline, f"job {job_id} was never analysed:\n{read_log()}"
        time.sleep(0.02)
    freeze(process)
    if f"job {job_id}: score" not in read_log():
        return True
    process.send_signal(signal.SIGCONT)
    return False


def take_over(db_sessions, lease_seconds: float = 60.0, owner: str = "another-worker") -> None:
    """Another worker claims the running job, as it may once the first one's lease of
    `lease_seconds` has run out (a stall, a network partition): the claim is made at a time
    past that lease."""
    with write_transaction(db_sessions) as session:
        later = database_now(session) + timedelta(seconds=lease_seconds + 1)
        assert claim(session, owner=owner, lease_seconds=600, now=later) is not None


def add_jobs(
    db_sessions,
    count: int,
    *,
    prefix: str = "org/model",
    revision: str = SHA,
    source=JobSource.HUB,
    max_attempts: int = 3,
    local_path: str | None = None,
) -> list[int]:
    ids = []
    for i in range(count):
        with write_transaction(db_sessions) as session:
            job, created = enqueue(
                session,
                model_id=f"{prefix}-{i}",
                revision=revision,
                source=source,
                local_path=local_path,
                max_attempts=max_attempts,
            )
            assert created
            ids.append(job.id)
    return ids


# --- subprocesses ------------------------------------------------------------------------------


def python_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that imports this source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


WORKER_CMD = [sys.executable, "-m", "workers.worker"]


# --- a live HTTP server ------------------------------------------------------------------------

SERVER_START_TIMEOUT_S = 60


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """An ASGI app under a real uvicorn server on a loopback port, in a background thread."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def live_server(database_url: str, **env: str) -> Iterator[str]:
    """`swreg serve` in a subprocess on `database_url`; yields its address (http://127.0.0.1:PORT)
    once /api/v1/health answers, and stops it afterwards."""
    import httpx

    port = free_port()
    address = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from registry.cli import main; main()",
            "serve",
            "--port",
            str(port),
        ],
        env=python_env(SWREG_DATABASE_URL=database_url, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                raise AssertionError(f"server exited: {server.stdout.read()}")
            try:
                if httpx.get(f"{address}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not start")
            time.sleep(0.2)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- candidates as detection names them -------------------------------------------------------


def candidate(
    row: int, col: int, contribution: float, output: float, prompt: int = 0, layer: int = 3
):
    """A detected candidate seen on one prompt: its contribution to a spiking output."""
    from workers.science.detection import Candidate, Observation

    observation = Observation(
        prompt=prompt,
        token=0,
        output=output,
        input=100.0,
        contribution=contribution,
        share=contribution / output,
        ratio=500.0,
        threshold=50.0,
    )
    return Candidate(
        layer=layer, row=row, col=col, value=contribution / 100.0, observations=[observation]
    )


QUANTIZATION_EVAL = {
    "path": "data/eval/eval_text.txt",
    "sha256": "e" * 64,
    "tokens": 1024,
    "windows": 1,
}


def _quantized_score(perplexity: float, **extra) -> dict:
    return {
        "perplexity": perplexity,
        "mean_kl_from_baseline": 0.5,
        "stop_word_probability": 0.4,
        "tokens": 1023,
        **extra,
    }


def quantization_check() -> dict:
    """A check as `swreg quantize-check --json` prints it (figures of an earlier SmolLM2 run, one
    window; an infinite perplexity stands for a destroyed model)."""
    return {
        "method": "weight-only round-to-nearest",
        "weights": "all",
        "matrices": 210,
        "clip_rule": {"rms_multiple": 10.0, "quantile": None, "description": "10 x RMS"},
        "kept": [
            {
                "tensor": "model.layers.11.mlp.down_proj.weight",
                "index": [507, 1229],
                "layer": 11,
                "module": "mlp.down_proj",
                "row": 507,
                "col": 1229,
                "value": 5.88,
            }
        ],
        "kept_from": "detection",
        "eval": QUANTIZATION_EVAL,
        "baseline": _quantized_score(25.61),
        "results": [
            _quantized_score(189.6, ratio=189.6 / 25.61, bits=4, block=64, variant="clip"),
            _quantized_score(64.65, ratio=64.65 / 25.61, bits=4, block=64, variant="clip_keep"),
            _quantized_score(float("inf"), ratio=float("inf"), bits=3, block=None, variant="clip"),
        ],
        "code_version": "0.1.0",
        "device": "cpu",
        "timings": {"total": 100.0},
        "bytes_read": 538_000_000,
    }


def other_database_url(url: str, request, tmp_path: Path) -> str:
    """A second, empty database of the same kind as `url`: a fresh PostgreSQL schema, or a new
    SQLite file in `tmp_path`."""
    if url.startswith("postgresql"):
        return request.getfixturevalue("postgres_schema")()
    return f"sqlite:///{tmp_path / 'other.db'}"


@contextmanager
def other_database(db_sessions, request, tmp_path: Path) -> Iterator:
    """A sessionmaker on a second, migrated, empty database of the same kind as `db_sessions`'."""
    from registry import migrate
    from registry.database import make_engine, make_sessionmaker

    url = other_database_url(str(db_sessions.kw["bind"].url), request, tmp_path)
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()
