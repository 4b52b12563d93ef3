"""`swreg bench`: time swreg's job against the naive approach on the same checkpoints, and show
that its memory does not grow with the model.

Each approach runs in its own process, timed from start to exit (imports included, as a user
would run it); its peak host memory is the process's maximum resident set size, read by the
parent when the process ends (wait4), and it reports its peak GPU memory itself. The time to read
the checkpoint once is measured with the page cache dropped for its files (cold), which is the
floor for any job that must look at every weight.

In one run: SmolLM2 and a 3 GB synthetic Llama, whole job against the naive approach (wall, peak,
bytes read, verdicts, variant-tokens scored); detection alone (`swreg detect --no-validate`, as a
user runs it) against the naive one-pass detection; the synthetic checkpoint under a memory cap of
half its size; and a 1.5B-parameter synthetic Llama, with and without a planted super weight,
judged by swreg alone.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import click

from workers.fixtures.cache import cache_root
from workers.science.disk_reads import evict_from_page_cache

GIB = 1024**3
MIB = 1024**2
READ_CHUNK_BYTES = 64 * MIB
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_V1_MEMORY = CGROUP_ROOT / "memory"
# Evaluation tokens on the synthetic checkpoints: the default budget, as for SmolLM2.
SYNTHETIC_EVAL_TOKENS = 1024
FETCH_REPO = "swreg-bench/smollm2-with-duplicates"
# Detection alone takes seconds, most of them imports: its ratio is the median of paired runs.
DETECTION_REPEATS = 3


@dataclass(frozen=True)
class SyntheticShape:
    """A Llama-shaped checkpoint of random weights with one planted super weight."""

    name: str
    hidden: int
    d_ff: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    dtype: str

    def approx_bytes(self) -> int:
        per_layer = 2 * self.hidden * self.hidden + 2 * self.hidden * self.hidden * self.kv_heads // self.heads
        per_layer += 3 * self.hidden * self.d_ff
        width = 2 if self.dtype == "bfloat16" else 4
        return width * (self.layers * per_layer + 2 * self.vocab * self.hidden)


SHAPES = {
    # CPU machine: 3.2 GB of bf16 (as real checkpoints are stored), 134 MB per layer, 268 MB once
    # cast to float32 for the CPU: two layers, the embeddings, torch itself and the activations
    # fit under a 1.5 GiB cap that is less than half the checkpoint; the whole model in float32
    # (6.4 GB) does not.
    "cpu": SyntheticShape("cpu", 2048, 8192, 24, 16, 16, 4096, "bfloat16"),
    # GPU machine: Llama-7B's shape in bf16 (13.5 GB, as in the figures).
    "7b": SyntheticShape("7b", 4096, 11008, 32, 32, 32, 32000, "bfloat16"),
    # 1.51B parameters: Qwen2.5-1.5B's decoder (hidden 1536, d_ff 8960, 28 layers, 12 heads, 2 KV
    # heads) with a 65,536-token vocabulary, untied (3.0 GB in bf16).
    "1.5b": SyntheticShape("1.5b", 1536, 8960, 28, 12, 2, 65536, "bfloat16"),
}
PLANT_LAYER = 2
# The decoy of the 1.5B checkpoints: a spike with no super weight behind it, one input channel
# feeding 8 rows (the most spiking rows detection keeps per layer), as the real 1.5B model that
# named 45 candidates had.
DECOY_LAYER = 4
DECOY_ROWS = 8
DECOY_VALUE = 3.0


def synthetic_checkpoint(shape: SyntheticShape, plant: bool = True, decoy: bool = False) -> Path:
    """Build (once, cached) the synthetic checkpoint for `shape`: with a planted super weight at
    layer 2 (or none), and optionally a decoy spike."""
    import torch

    from workers.fixtures.planted import Plant
    from workers.fixtures.synthetic_llama import Decoy, build_synthetic_llama

    variant = ("plant" if plant else "noplant") + ("-decoy" if decoy else "")
    name = f"synthetic-{shape.name}-{shape.hidden}x{shape.d_ff}x{shape.layers}"
    if variant != "plant":  # the plain planted checkpoint keeps its earlier cache name
        name += f"-{variant}"
    target = cache_root() / "bench" / name
    if (target / "config.json").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    build_synthetic_llama(
        partial,
        hidden_size=shape.hidden,
        intermediate_size=shape.d_ff,
        num_layers=shape.layers,
        num_heads=shape.heads,
        num_kv_heads=shape.kv_heads,
        vocab_size=shape.vocab,
        dtype=getattr(torch, shape.dtype),
        plant=Plant(layer=PLANT_LAYER, row=shape.hidden // 3, col=shape.d_ff // 5, value=4.0) if plant else None,
        decoy=Decoy(
            layer=DECOY_LAYER, col=shape.d_ff // 7,
            rows=tuple(shape.hidden // 2 + 3 * i for i in range(DECOY_ROWS)), value=DECOY_VALUE,
        ) if decoy else None,
    )
    partial.rename(target)
    return target


# The synthetic mixture of experts: Qwen3-MoE-shaped (one stored tensor per expert, as its
# checkpoints are), 32 experts of which each token takes 4, 10 layers, float32 on disk: 3.1 GB,
# 302 MB of experts per layer. Every token takes the same experts (the construction points every
# hidden state along one massive dimension), so most experts are read and never multiplied.
MOE_FAMILY = "qwen3_moe"
MOE_SIZE_FIELDS = dict(hidden=1024, heads=16, kv_heads=4, expert_inner=768, num_experts=32, top_k=4, num_layers=10)


def synthetic_moe_checkpoint() -> Path:
    """Build (once, cached) the planted synthetic MoE checkpoint: a super weight inside a routed
    super expert of layer 1, a decoy and an unreached expert that would spike."""
    from workers.fixtures.planted_moe import MoeSize, build_planted_moe

    size = MoeSize(**MOE_SIZE_FIELDS)
    target = cache_root() / "bench" / (
        f"synthetic-moe-{MOE_FAMILY}-{size.hidden}x{size.expert_inner}x{size.num_experts}e{size.top_k}"
        f"x{size.num_layers}"
    )
    if (target / "config.json").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    build_planted_moe(MOE_FAMILY, partial, size=size)
    partial.rename(target)
    return target


def layer_bytes(model_dir: Path) -> int:
    """The largest decoder layer's stored bytes: what the streamed sweep's peak is measured in."""
    from workers.science.checkpoint import open_checkpoint

    checkpoint = open_checkpoint(model_dir)
    sizes: dict[int, int] = {}
    for name, (start, end) in checkpoint.tensor_span.items():
        parts = name.split(".")
        if "layers" in parts and parts[parts.index("layers") + 1].isdigit():
            layer = int(parts[parts.index("layers") + 1])
            sizes[layer] = sizes.get(layer, 0) + end - start
    return max(sizes.values(), default=0)


def expected_verdicts(shape: SyntheticShape, plant: bool, decoy: bool) -> dict[tuple[int, int, int], str]:
    """(layer, row, col) -> the verdict the construction implies."""
    expected = {}
    if plant:
        expected[(PLANT_LAYER, shape.hidden // 3, shape.d_ff // 5)] = "verified"
    if decoy:
        for i in range(DECOY_ROWS):
            expected[(DECOY_LAYER, shape.hidden // 2 + 3 * i, shape.d_ff // 7)] = "rejected"
    return expected


def weight_files(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors"))


def read_once(files: list[Path], cold: bool) -> tuple[float, int]:
    """Seconds to read every byte of the files once, and the bytes read."""
    if cold:
        evict_from_page_cache(files)
    buffer = bytearray(READ_CHUNK_BYTES)
    view = memoryview(buffer)
    total = 0
    started = time.perf_counter()
    for file in files:
        with file.open("rb", buffering=0) as handle:
            while count := handle.readinto(view):
                total += count
    return time.perf_counter() - started, total


def _cgroup_v2_memory() -> bool:
    """The unified (v2) hierarchy is mounted at /sys/fs/cgroup and offers the memory controller."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    return controllers.is_file() and "memory" in controllers.read_text().split()


class MemoryCap:
    """Run child processes under a memory limit on their resident memory: a cgroup-v2 memory
    cgroup (memory.max) where the unified hierarchy has the memory controller, else a cgroup-v1
    memory cgroup (memory.limit_in_bytes), both when this process may create one (root on the
    CI and development machines). Both also count the page cache of the files read, which the
    kernel reclaims under the limit. Failing both, RLIMIT_AS, which limits address space, not
    resident memory (mappings that are never touched count), and is labelled so."""

    LABELS: ClassVar[dict[str, str]] = {
        "cgroup-v2": "cgroup v2 memory.max",
        "cgroup-v1": "cgroup v1 memory.limit_in_bytes",
        "rlimit-as": "RLIMIT_AS (address space, not resident memory)",
    }

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.cgroup: Path | None = None
        self.kind = "none"

    @property
    def label(self) -> str:
        return self.LABELS.get(self.kind, self.kind)

    def _make(self, root: Path, files: dict[str, str]) -> bool:
        candidate = root / f"swreg-bench-{os.getpid()}"
        try:
            candidate.mkdir()
            for name, value in files.items():
                if (candidate / name).exists():
                    (candidate / name).write_text(value)
            self.cgroup = candidate
            return True
        except OSError:
            if candidate.exists():
                candidate.rmdir()
            return False

    def __enter__(self) -> "MemoryCap":
        limit = str(self.limit)
        if _cgroup_v2_memory() and self._make(CGROUP_ROOT, {"memory.max": limit, "memory.swap.max": "0"}):
            self.kind = "cgroup-v2"
        # Swap counted too where the kernel accounts it, so the cap cannot be dodged by swapping.
        elif self._make(CGROUP_V1_MEMORY, {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit}):
            self.kind = "cgroup-v1"
        else:
            self.kind = "rlimit-as"
        return self

    def preexec(self) -> None:  # runs in the child, before exec
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))
        else:
            resource.setrlimit(resource.RLIMIT_AS, (self.limit, self.limit))

    def peak_bytes(self) -> int | None:
        """The cgroup's peak charge (resident memory plus page cache), where the kernel keeps it."""
        if self.cgroup is None:
            return None
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            if (self.cgroup / name).is_file():
                return int((self.cgroup / name).read_text())
        return None

    def __exit__(self, *exc) -> None:
        if self.cgroup is not None:
            try:
                self.cgroup.rmdir()
            except OSError:
                pass


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


# How often the parent reads a running child's peak resident memory.
PEAK_POLL_SECONDS = 0.02


def _high_water_mark(pid: int) -> int | None:
    """VmHWM of a running process, in bytes: the peak resident memory of its own address
    space since its last exec (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _watch_peak(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        value = _high_water_mark(pid)
        if value is None:
            return
        peak[0] = max(peak[0], value)
        stop.wait(PEAK_POLL_SECONDS)


def _timed(command: list[str], cap: "MemoryCap | None", out: Path, stdout_json: bool = False) -> tuple[float, int, int, dict | None, str]:
    """Run a command to its end: wall seconds, exit status, peak resident bytes, the JSON it
    wrote, and the end of its stderr.

    The peak is the child's VmHWM, read every PEAK_POLL_SECONDS while it runs (growth in its last
    poll interval before exiting is missed). Not wait4's ru_maxrss: Linux carries the high-water
    mark of the address space a process replaced by exec into its ru_maxrss, and subprocess
    starts children with vfork, whose child borrows this (parent) process's address space until
    it execs, so every child would report at least the bench's own peak (measured: 2.35 GiB for
    every run after the synthetic checkpoint was generated, whatever the child did)."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, preexec_fn=cap.preexec if cap else None
        )
        peak, stop = [0], threading.Event()
        watcher = threading.Thread(target=_watch_peak, args=(process.pid, stop, peak), daemon=True)
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
    approach: str, model_dir: Path, device: str, eval_tokens: int, cap: MemoryCap | None = None,
    validate: bool = True,
) -> ChildRun:
    """Run one approach in a fresh process and time it from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [
            sys.executable, "-m", "workers.commands.bench", approach, str(model_dir),
            "--device", device, "--eval-tokens", str(eval_tokens), "--out", str(out),
            *([] if validate else ["--no-validate"]),
        ]
        wall, code, peak, result, tail = _timed(command, cap, out)
    return ChildRun(approach, wall, code, result, peak, tail)


def run_detect_command(model_dir: Path, device: str) -> ChildRun:
    """`swreg detect MODEL --no-validate --json`, as a user runs it."""
    command = [
        sys.executable, "-m", "registry.cli", "detect", str(model_dir), "--no-validate", "--json",
        "--device", device,
    ]
    wall, code, peak, result, tail = _timed(command, None, Path("/nonexistent"), stdout_json=True)
    return ChildRun("swreg detect", wall, code, result, peak, tail)


def _child(approach: str, model_dir: str, device: str, eval_tokens: int, out: str, validate: bool) -> None:
    """Entry point of a timed child process."""
    import torch

    from workers.science.pipeline.steps import AnalysisOptions

    options = AnalysisOptions(
        device=device, eval_tokens=eval_tokens, validate=validate,
        sequential=approach != "swreg-exhaustive",
    )
    if approach == "naive":
        from workers.science.pipeline.naive import analyse_naive as run
    else:
        from workers.science.pipeline.sweep import analyse as run
    report = run(model_dir, options).as_json_dict()
    gpu_peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    Path(out).write_text(json.dumps({"report": report, "peak_gpu_bytes": gpu_peak}))


def _report(document: dict):
    # pydantic behind the report model: imported when a run is judged, not for `bench -h`.
    from workers.contract.report import Report

    return Report.model_validate(document)


def _verdicts(report: dict) -> list[tuple]:
    parsed = _report(report)
    return [(sw.tensor, tuple(sw.index), sw.state) for sw in parsed.super_weights]


def _expert_verdicts(report: dict) -> list[tuple]:
    return [(se.layer, se.expert, se.state) for se in _report(report).super_experts]


def agreement(swreg: dict, naive: dict) -> dict:
    """Do the two reports name the same coordinates with the same verdicts, and does the naive
    (exhaustive) ablation ratio of each lie inside swreg's interval?"""
    same = _verdicts(swreg) == _verdicts(naive) and _expert_verdicts(swreg) == _expert_verdicts(naive)
    inside = True
    pairs = zip(_report(swreg).super_weights, _report(naive).super_weights)
    for x, y in pairs:
        vx, vy = x.evidence.validation, y.evidence.validation
        if vx and vy and vx.ablated.interval:
            inside &= vx.ablated.interval.low <= vy.ablated.ratio <= vx.ablated.interval.high
    return {"same_coordinates_and_verdicts": same, "naive_ratio_inside_swreg_interval": inside}


def _variant_tokens(run: ChildRun) -> dict | None:
    validation = run.result and run.result["report"].get("validation")
    if not validation:
        return None
    return {
        "scored": validation["variant_tokens"],
        "on_whole_budget": validation["exhaustive_variant_tokens"],
        "variants": validation["variants"],
        "rounds": validation["rounds"],
    }


def _figures(run: ChildRun) -> dict:
    return {
        "ok": run.ok,
        "returncode": run.returncode,
        "wall_s": run.wall_seconds,
        "peak_host_bytes": run.peak_host_bytes,
        "peak_gpu_bytes": run.result and run.result["peak_gpu_bytes"],
        "bytes_read": run.result and run.result["report"]["bytes_read"],
        "timings": run.result and run.result["report"]["timings"],
        "variant_tokens": _variant_tokens(run),
        "super_weights": run.result and [list(v) for v in _verdicts(run.result["report"])],
        "super_experts": run.result and [list(v) for v in _expert_verdicts(run.result["report"])],
        "error": None if run.ok else run.stderr_tail.strip().splitlines()[-1:],
    }


def _fmt_bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


def compare(model_dir: Path, device: str, eval_tokens: int) -> dict:
    """The whole job, naive against swreg, each from a cold page cache."""
    files = weight_files(model_dir)
    read_cold, total = read_once(files, cold=True)
    read_warm, _ = read_once(files, cold=False)
    evict_from_page_cache(files)
    naive = run_approach("naive", model_dir, device, eval_tokens)
    evict_from_page_cache(files)
    swreg = run_approach("swreg", model_dir, device, eval_tokens)
    figures = {
        "checkpoint": str(model_dir),
        "checkpoint_bytes": total,
        "read_once_cold_s": read_cold,
        "read_once_warm_s": read_warm,
        "eval_tokens": eval_tokens,
        "naive": _figures(naive),
        "swreg": _figures(swreg),
    }
    if naive.ok and swreg.ok:
        figures["swreg_over_naive"] = swreg.wall_seconds / naive.wall_seconds
        figures["peak_swreg_over_naive"] = swreg.peak_host_bytes / naive.peak_host_bytes
        figures["swreg_over_read_cold"] = swreg.wall_seconds / read_cold
        figures["agreement"] = agreement(swreg.result["report"], naive.result["report"])
    return figures


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def compare_detection(model_dir: Path, device: str, repeats: int = DETECTION_REPEATS) -> dict:
    """Detection alone: `swreg detect --no-validate --json` against the naive one-pass detection
    (the whole model loaded, one pass per prompt), in `repeats` pairs (each from a cold page
    cache); the figures of the median run of each, and the median of the paired ratios."""
    pairs = []
    for _ in range(repeats):
        evict_from_page_cache(weight_files(model_dir))
        naive = run_approach("naive", model_dir, device, SYNTHETIC_EVAL_TOKENS, validate=False)
        evict_from_page_cache(weight_files(model_dir))
        swreg = run_detect_command(model_dir, device)
        pairs.append((naive, swreg))
    naive = sorted((p[0] for p in pairs), key=lambda r: r.wall_seconds)[len(pairs) // 2]
    swreg = sorted((p[1] for p in pairs), key=lambda r: r.wall_seconds)[len(pairs) // 2]
    figures = {
        "checkpoint": str(model_dir), "repeats": repeats,
        "naive": _figures(naive), "swreg": _figures(swreg),
        "wall_s_all": {"naive": [p[0].wall_seconds for p in pairs], "swreg": [p[1].wall_seconds for p in pairs]},
    }
    if all(n.ok and s.ok for n, s in pairs):
        figures["swreg_over_naive"] = _median([s.wall_seconds / n.wall_seconds for n, s in pairs])
        figures["peak_swreg_over_naive"] = _median(
            [s.peak_host_bytes / n.peak_host_bytes for n, s in pairs]
        )
        figures["same_candidates"] = _verdicts(swreg.result["report"]) == _verdicts(naive.result["report"])
    return figures


def memory_capped(model_dir: Path, device: str, eval_tokens: int, cap_bytes: int) -> dict:
    size = sum(f.stat().st_size for f in weight_files(model_dir))
    figures = {"checkpoint": str(model_dir), "checkpoint_bytes": size, "cap_bytes": cap_bytes}
    for approach in ("swreg", "naive"):
        evict_from_page_cache(weight_files(model_dir))
        with MemoryCap(cap_bytes) as cap:
            run = run_approach(approach, model_dir, device, eval_tokens, cap)
            figures["cap_kind"] = cap.label
            figures[approach] = {**_figures(run), "cgroup_peak_bytes": cap.peak_bytes()}
    return figures


def judge_large(shape: SyntheticShape, device: str, eval_tokens: int) -> dict:
    """swreg alone on the 1.5B-parameter checkpoints, with and without a planted super weight
    (both with a decoy spike): its verdicts against those the construction implies."""
    figures = {}
    for plant in (True, False):
        path = synthetic_checkpoint(shape, plant=plant, decoy=True)
        evict_from_page_cache(weight_files(path))
        run = run_approach("swreg", path, device, eval_tokens)
        found = {}
        if run.ok:
            for sw in _report(run.result["report"]).super_weights:
                found[(sw.layer, sw.row, sw.col)] = sw.state
        expected = expected_verdicts(shape, plant, decoy=True)
        figures["with_plant" if plant else "without_plant"] = {
            **_figures(run),
            "checkpoint": str(path),
            "checkpoint_bytes": sum(f.stat().st_size for f in weight_files(path)),
            "verdicts_as_constructed": run.ok and found == expected,
        }
    return figures


def fetch_ratio(model_dir: Path) -> dict:
    """Bytes a worker fetches over the bytes of a repository that also carries a pickle (.bin)
    and a GGUF copy of the same model, laid out in an offline Hugging Face cache.

    The fetch runs in a child process because huggingface_hub reads HF_HUB_OFFLINE when it is
    imported; this process imported it long ago.
    """
    from workers.fixtures.hf_cache import install_into_hf_cache
    from workers.fixtures.smollm2 import smollm2_gguf_path

    cache = cache_root() / "bench" / "hf-cache"
    weights = sum(f.stat().st_size for f in weight_files(model_dir))
    extra = {
        # Same size as the safetensors weights: what a PyTorch pickle of them would weigh. It is
        # never read, only listed and skipped.
        "pytorch_model.bin": bytes(weights),
        "SmolLM2-135M-Instruct.Q4_1.gguf": smollm2_gguf_path().read_bytes(),
    }
    sha = install_into_hf_cache(model_dir, cache, FETCH_REPO, extra_files=extra)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fetch.json"
        subprocess.run(
            [sys.executable, "-m", "workers.commands.bench", "fetch", FETCH_REPO, "--revision", sha,
             "--cache", str(cache), "--out", str(out)],
            check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        return json.loads(out.read_text())


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


def _tokens(r: dict) -> str:
    v = r.get("variant_tokens")
    return "-" if not v else f"{v['variants']:>3} {v['scored']:>9,} / {v['on_whole_budget']:<9,}"


def _row(name: str, r: dict) -> str:
    result = r["super_weights"] if r["ok"] else f"FAILED {r['error']}"
    return (
        f"{name:<14} {r['wall_s']:>8.1f} {_fmt_bytes(r['peak_host_bytes']):>12} "
        f"{_fmt_bytes(r['peak_gpu_bytes']):>10} {_fmt_bytes(r['bytes_read']):>12}  {_tokens(r):<25}  {result}"
    )


HEADER = (
    f"{'approach':<14} {'wall s':>8} {'peak host':>12} {'peak GPU':>10} {'bytes read':>12}  "
    f"{'variants, variant-tokens scored / on the whole budget':<25}  verdicts"
)


def print_comparison(title: str, f: dict) -> None:
    click.echo(f"\n== {title}: {f['checkpoint']} ({f['checkpoint_bytes'] / GIB:.2f} GiB) ==")
    click.echo(
        f"read once: {f['read_once_cold_s']:.2f} s cold, {f['read_once_warm_s']:.2f} s warm; "
        f"eval tokens {f['eval_tokens']}"
    )
    click.echo(HEADER)
    for name in ("naive", "swreg"):
        click.echo(_row(name, f[name]))
    if "swreg_over_naive" in f:
        click.echo(
            f"swreg / naive: wall {f['swreg_over_naive']:.2f}, peak {f['peak_swreg_over_naive']:.2f}; "
            f"swreg / read once cold = {f['swreg_over_read_cold']:.2f}; agreement {f['agreement']}"
        )


def print_detection(f: dict) -> None:
    click.echo(f"detection alone (no validation; median of {f['repeats']} paired runs):")
    click.echo(f"  {'naive':<22} {f['naive']['wall_s']:>7.1f} s  peak {_fmt_bytes(f['naive']['peak_host_bytes'])}")
    click.echo(f"  {'swreg detect (CLI)':<22} {f['swreg']['wall_s']:>7.1f} s  peak {_fmt_bytes(f['swreg']['peak_host_bytes'])}")
    if "swreg_over_naive" in f:
        click.echo(
            f"  swreg / naive (median of the paired ratios): wall {f['swreg_over_naive']:.2f}, "
            f"peak {f['peak_swreg_over_naive']:.2f}; same candidates: {f['same_candidates']}"
        )


def print_summary(figures: dict) -> None:
    """Each figure the issue sets a target for, beside its target."""
    rows = []

    def add(label: str, value: float | None, target: str) -> None:
        rows.append(f"  {label:<52} {'-' if value is None else f'{value:.2f}':>6}   target {target}")

    for key, title in (("smollm2", "SmolLM2"), ("synthetic", "synthetic"), ("synthetic_moe", "synthetic MoE")):
        if key in figures:
            target = "<= 0.25" if key == "smollm2" else "<= 0.5"
            add(f"{title}: whole job, swreg / naive (wall)", figures[key].get("swreg_over_naive"), target)
            add(f"{title}: whole job, swreg / naive (peak)", figures[key].get("peak_swreg_over_naive"),
                "<= 0.5" if key == "smollm2" else "-")
        if f"{key}_detection" in figures:
            f = figures[f"{key}_detection"]
            add(f"{title}: detection alone, swreg / naive (wall)", f.get("swreg_over_naive"), "<= 1.0")
            add(f"{title}: detection alone, swreg / naive (peak)", f.get("peak_swreg_over_naive"), "<= 0.5")
    for name, r in figures.get("large", {}).items():
        add(f"1.5B {name.replace('_', ' ')}: minutes (verdicts as built: {r['verdicts_as_constructed']})",
            r["wall_s"] / 60, "<= 10")
    if rows:
        click.echo("\nsummary:")
        for row in rows:
            click.echo(row)


@click.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--smollm2/--no-smollm2", default=True, show_default=True, help="Bench the real SmolLM2-135M.")
@click.option("--synthetic", type=click.Choice([s for s in SHAPES if s != "1.5b"] + ["none"]), default=None,
              help="Synthetic checkpoint shape (default: cpu on the CPU, 7b on CUDA).")
@click.option("--detection/--no-detection", default=True, show_default=True,
              help="Also time detection alone against the naive one-pass detection.")
@click.option("--memory-cap-gib", type=float, default=None,
              help="Memory cap for the capped run on the synthetic checkpoint "
              "(default: half the checkpoint; 0: skip).")
@click.option("--large/--no-large", default=True, show_default=True,
              help="Judge the 1.5B-parameter synthetic checkpoints (with and without a plant).")
@click.option("--moe/--no-moe", default=True, show_default=True,
              help="Bench a 3 GB synthetic mixture of experts (Qwen3-MoE-shaped, 32 experts).")
@click.option("--eval-tokens", type=int, default=1024, show_default=True,
              help="Evaluation tokens (at most) for every checkpoint.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write every figure here.")
def bench(device, smollm2, synthetic, detection, memory_cap_gib, large, moe, eval_tokens, json_out) -> None:
    """Time swreg's job against the naive approach and print the figures.

    \b
    Examples:
      swreg bench --json bench.json                 # everything: about 30 minutes on two cores
      swreg bench --synthetic none --no-large --no-moe   # SmolLM2 alone
      swreg bench --no-smollm2 --synthetic none --no-large   # the synthetic MoE alone
      swreg bench --device cuda --synthetic 7b      # on a GPU machine
    """
    figures: dict = {"device": device}
    if smollm2:
        from workers.fixtures.smollm2 import smollm2_dir

        path = smollm2_dir()
        figures["smollm2"] = compare(path, device, eval_tokens)
        print_comparison("SmolLM2-135M-Instruct", figures["smollm2"])
        if detection:
            figures["smollm2_detection"] = compare_detection(path, device)
            print_detection(figures["smollm2_detection"])
        figures["fetch"] = fetch_ratio(path)
        fetch = figures["fetch"]
        click.echo(
            f"\nfetch: {fetch['fetched_bytes'] / MIB:,.0f} MiB of a {fetch['repo_bytes'] / MIB:,.0f} MiB "
            f"repo (.safetensors + .bin + .gguf): {fetch['fetched_over_repo']:.3f}"
        )
    shape_name = synthetic or ("7b" if device == "cuda" else "cpu")
    if shape_name != "none":
        shape = SHAPES[shape_name]
        path = synthetic_checkpoint(shape)
        figures["synthetic"] = compare(path, device, eval_tokens)
        print_comparison(f"synthetic {shape_name}", figures["synthetic"])
        if detection:
            figures["synthetic_detection"] = compare_detection(path, device)
            print_detection(figures["synthetic_detection"])
        size = sum(f.stat().st_size for f in weight_files(path))
        cap = size // 2 if memory_cap_gib is None else int(memory_cap_gib * GIB)
        if cap > 0 and device == "cpu":
            capped = memory_capped(path, device, eval_tokens, cap)
            figures["memory_capped"] = capped
            click.echo(
                f"\nunder a {cap / GIB:.2f} GiB cap ({capped['cap_kind']}) on a "
                f"{capped['checkpoint_bytes'] / GIB:.2f} GiB checkpoint:"
            )
            for name in ("swreg", "naive"):
                r = capped[name]
                state = "completed" if r["ok"] else f"failed (exit {r['returncode']})"
                click.echo(
                    f"  {name:<10} {state}, {r['wall_s']:.1f} s, peak host {_fmt_bytes(r['peak_host_bytes'])}, "
                    f"cgroup peak (with page cache) {_fmt_bytes(r['cgroup_peak_bytes'])}, {r['super_weights']}"
                )
    if moe:
        path = synthetic_moe_checkpoint()
        figures["synthetic_moe"] = compare(path, device, eval_tokens)
        figures["synthetic_moe"]["layer_bytes"] = layer_bytes(path)
        print_comparison("synthetic mixture of experts", figures["synthetic_moe"])
        click.echo(f"  largest decoder layer as stored: {_fmt_bytes(figures['synthetic_moe']['layer_bytes'])}")
    if large and device == "cpu":
        shape = SHAPES["1.5b"]
        figures["large"] = judge_large(shape, device, eval_tokens)
        click.echo(f"\n== 1.5B parameters ({shape.hidden} x {shape.d_ff} x {shape.layers}, vocab {shape.vocab}), swreg alone ==")
        click.echo(HEADER)
        for name, r in figures["large"].items():
            click.echo(_row(name, r))
            click.echo(f"  verdicts as the construction implies: {r['verdicts_as_constructed']}")
    print_summary(figures)
    if json_out:
        Path(json_out).write_text(json.dumps(figures, indent=2))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="swreg bench child process")
    parser.add_argument("approach", choices=["swreg", "swreg-exhaustive", "naive", "fetch"])
    parser.add_argument("model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--revision")
    parser.add_argument("--cache")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.approach == "fetch":
        _fetch_child(args.model, args.revision, args.cache, args.out)
    else:
        _child(args.approach, args.model, args.device, args.eval_tokens, args.out, not args.no_validate)


if __name__ == "__main__":
    main()
