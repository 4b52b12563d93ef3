"""Hostile checkpoints against a real worker: each is refused in one line, at once and for good
(failed on its first attempt, never handed back), before anything is built from it; the worker
goes on with the next job; and each analysis runs in a child process under a memory limit,
whose peak the worker reports."""

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from registry.jobs import service
from registry.jobs.models import Job, JobState
from tests.helpers import worker_messages
from workers.science.limits import Limits
from workers.worker import isolation
from workers.worker.loop import Worker, WorkerConfig

NAME = "hostile-worker"
# What a refused checkpoint's child may reach: the forkserver's imports (torch, transformers)
# and the headers it reads; far below what building the model the config asks for would take.
REFUSAL_PEAK_BOUND_BYTES = 1.5e9
PEAK = re.compile(r"job (\d+): (analysis) peak memory (\d+) MB \(limit (\d+) MB\)")


@pytest.fixture
def planted(planted_models) -> Path:
    return planted_models("llama").path


def _copy(planted: Path, where: Path, **config_changes) -> Path:
    shutil.copytree(planted, where)
    config = json.loads((where / "config.json").read_text())
    config.update(config_changes)
    (where / "config.json").write_text(json.dumps(config))
    return where


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def _int_down_projection(directory: Path) -> None:
    tensors = load_file(directory / "model.safetensors")
    name = "model.layers.0.mlp.down_proj.weight"
    tensors[name] = tensors[name].round().to(dtype=__import__("torch").int32)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})


def _hostile(planted: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (checkpoint folder, what its refusal must say)."""
    config = json.loads((planted / "config.json").read_text())
    layers = config["num_hidden_layers"]
    cases = {
        "layer bomb": (
            _copy(planted, root / "layers", num_hidden_layers=10**9),
            "config.json gives num_hidden_layers = 1000000000; it must be an integer from 1 to "
            "1,024",
        ),
        "inner width bomb": (
            _copy(planted, root / "inner", intermediate_size=10**9),
            "config.json gives intermediate_size = 1000000000; it must be an integer from 1 to",
        ),
        "vocabulary bomb": (
            _copy(planted, root / "vocab", vocab_size=10**10),
            "config.json gives vocab_size = 10000000000; it must be an integer from 1 to",
        ),
        "more layers than the tensors hold": (
            _copy(planted, root / "more-layers", num_hidden_layers=layers + 5),
            f"config.json gives num_hidden_layers = {layers + 5} but the checkpoint's tensors "
            f"hold {layers} layers",
        ),
        "a hidden size no tensor has": (
            _copy(planted, root / "hidden", hidden_size=999),
            "config.json gives hidden_size = 999 but no tensor of the checkpoint has that size",
        ),
        "zero attention heads": (
            _copy(planted, root / "heads", num_attention_heads=0),
            "config.json gives num_attention_heads = 0; it must be an integer from 1 to 4,096",
        ),
        "nested config": (
            _copy(planted, root / "nested", extra=_nested(40)),
            "config.json is nested more than 16 levels deep",
        ),
    }
    deep = _copy(planted, root / "deep")
    (deep / "config.json").write_text(
        (deep / "config.json").read_text()[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    cases["config nested past the parser"] = (deep, "unreadable config (nested too deep)")
    big = _copy(planted, root / "big-config")
    (big / "config.json").write_text(
        (big / "config.json").read_text()[:-1] + ', "pad": "' + "x" * 300_000 + '"}'
    )
    cases["config over its cap"] = (big, "bytes, over the cap of 262,144 bytes")
    tokenizer = _copy(planted, root / "big-tokenizer")
    (tokenizer / "tokenizer.json").write_text(
        (tokenizer / "tokenizer.json").read_text() + " " * 70_000
    )
    cases["tokenizer over its cap"] = (tokenizer, "(tokenizer) is")
    integers = _copy(planted, root / "int32")
    _int_down_projection(integers)
    cases["integer down projection"] = (
        integers,
        "model.layers.0.mlp.down_proj.weight is stored as I32; a down projection must be "
        "floating point",
    )
    return cases


# Caps small enough for the files above; the defaults are the same checks at larger sizes.
CAPS = Limits(config_bytes=256 * 1024, tokenizer_bytes=64 * 1024)
# Refused from their sizes during the fetch, before any analysis (no child to measure).
REFUSED_AT_FETCH = {"config over its cap", "tokenizer over its cap"}


def test_hostile_checkpoints_are_refused_at_once_in_one_line_and_the_worker_goes_on(
    sessions, planted, tmp_path, caplog
):
    cases = _hostile(planted, tmp_path / "hostile")
    jobs = {}
    for name, (folder, _) in cases.items():
        # Pinned at submission from the weights alone: the hostile config is the worker's to judge.
        jobs[name] = service.submit(sessions, str(folder), model_id=f"local/{folder.name}").job.id
    good = service.submit(sessions, str(planted), model_id="local/good").job.id
    worker = Worker(
        sessions,
        WorkerConfig(once=True, validate=False, lease_seconds=120, caps=CAPS),
        name=NAME,
    )
    with caplog.at_level(logging.INFO, logger="swreg.worker"):
        assert worker.run() == len(cases) + 1
    with sessions() as session:
        for name, (_, expected) in cases.items():
            job = session.get(Job, jobs[name])
            assert (job.state, job.attempts) == (JobState.FAILED, 1), (name, job.last_error)
            assert expected in job.last_error, (name, job.last_error)
            assert "\n" not in job.last_error and "Traceback" not in job.last_error
        assert session.get(Job, good).state == JobState.SUCCEEDED
    # Every analysis ran in a child under the limit; a refusal's child stayed small.
    peaks = {int(m[1]): int(m[3]) * 1e6 for r in worker_messages(caplog) if (m := PEAK.match(r))}
    analysed = {name: job_id for name, job_id in jobs.items() if name not in REFUSED_AT_FETCH}
    assert set(peaks) == {*analysed.values(), good}, worker_messages(caplog)
    for name, job_id in analysed.items():
        print(f"{name}: child peak {peaks[job_id] / 1e6:.0f} MB")
        assert peaks[job_id] < REFUSAL_PEAK_BOUND_BYTES, name


def _baseline_address_space(*, progress) -> int:
    """A forkserver child's data segment before any analysis (VmData), in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmData:"))
    return int(line.split()[1]) * 1024


# A model whose every layer holds 3 x 16 MB of feed-forward weights (inner width 65,536: within
# every bound, agreeing with its tensors), and a limit that leaves the analysis half of one layer
# above the child's own start: the analysis must fail, whatever the child inherited.
WIDE_INNER = 65_536
HEADROOM_BYTES = 24 * 1024**2


def _wide(planted: Path, where: Path) -> Path:
    """The planted model's config and tokenizer, with wide feed-forward layers (random weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.copytree(planted, where)
    (where / "model.safetensors").unlink()
    config = AutoConfig.from_pretrained(where)
    config.intermediate_size = WIDE_INNER
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(where)
    return where


def test_an_analysis_over_the_memory_limit_fails_for_good_and_the_worker_lives_on(
    sessions, planted, tmp_path, caplog
):
    baseline = isolation.run_isolated(
        _baseline_address_space, limit=isolation.memory_limit(0), progress=lambda *a: None
    ).value
    wide = _wide(planted, tmp_path / "wide")
    job_id = service.submit(sessions, str(wide), model_id="local/too-big").job.id
    small = Worker(
        sessions,
        WorkerConfig(
            once=True,
            validate=False,
            lease_seconds=120,
            memory_limit_bytes=baseline + HEADROOM_BYTES,
        ),
        name=NAME,
    )
    with caplog.at_level(logging.INFO, logger="swreg.worker"):
        assert small.run() == 1
    with sessions() as session:
        job = session.get(Job, job_id)
        assert (job.state, job.attempts) == (JobState.FAILED, 1), job.last_error
    assert job.last_error.startswith("the analysis needs more memory than the worker's limit of"), (
        job.last_error
    )
    print(f"over the limit: {job.last_error}")
    # The same worker process takes the next job, with room enough.
    again = service.submit(sessions, str(planted), model_id="local/fits").job.id
    roomy = Worker(sessions, WorkerConfig(once=True, validate=False, lease_seconds=120), name=NAME)
    assert roomy.run() == 1
    with sessions() as session:
        assert session.get(Job, again).state == JobState.SUCCEEDED


def _allocate_a_gigabyte(*, progress) -> int:
    import torch

    progress("load", 0, 1)
    return int(torch.ones(2**28).sum())  # 1 GiB of float32, touched


def test_an_allocation_past_the_limit_fails_in_the_child_and_its_peak_stays_under_it():
    baseline = isolation.run_isolated(
        _baseline_address_space, limit=isolation.memory_limit(0), progress=lambda *a: None
    ).value
    limit = baseline + 256 * 1024**2
    seen = []
    with pytest.raises(isolation.AnalysisOutOfMemory) as refused:
        isolation.run_isolated(
            _allocate_a_gigabyte, limit=limit, progress=lambda *report: seen.append(report)
        )
    assert seen == [("load", 0, 1)]  # progress crossed the pipe before the allocation
    assert str(refused.value).startswith("the analysis needs more memory than the worker's limit")
    assert 0 < refused.value.peak_bytes < limit
    print(f"1 GiB past a limit of {limit / 1e6:.0f} MB: {refused.value}")
    # With room enough, the same allocation succeeds.
    assert (
        isolation.run_isolated(
            _allocate_a_gigabyte, limit=baseline + 2 * 1024**3, progress=lambda *a: None
        ).value
        == 2**28
    )
