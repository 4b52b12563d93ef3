"""`swreg bench`: time swreg's one-sweep job against the naive approach on the same checkpoint,
and show that its memory does not grow with the model.

Each approach runs in its own process, timed from start to exit (imports included, as a user
would run it). Its peak host memory is the kernel's maximum resident set size for the whole
child process (ru_maxrss from wait4); the child also reports its own (RUSAGE_SELF, taken when
it writes its result) and its peak GPU memory. The checkpoint's files are hashed once, here, and
their sha256 handed to both children (as a worker gets them from the Hub's blob names), so that
each child reads the weights only to analyse them, starting with them out of the page cache.
The time to read the checkpoint once is measured with the page cache dropped for its files
(cold), which is the floor for any job that must look at every weight.

The memory demonstration runs the swreg job on a checkpoint at least twice the size of a memory
cap, and the naive approach under the same cap. The cap is a cgroup-v1 memory cgroup when this
process may create one (root, with cgroup v1 mounted); otherwise (cgroup v2, or no root) it is
an address-space limit (RLIMIT_AS), which counts mapped but untouched memory too and so is a
stricter, different cap. The figures say which (`cap_kind`).
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click

from workers.contract.report import Report
from workers.fixtures.cache import cache_root
from workers.science.disk_reads import evict_from_page_cache

GIB = 1024**3
MIB = 1024**2
# ru_maxrss is in KiB on Linux.
KIB = 1024
READ_CHUNK_BYTES = 64 * MIB
CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
# Evaluation tokens on the synthetic checkpoints: the timing ratio does not depend on the text's
# length, and random weights make perplexity meaningless beyond a stable mean.
SYNTHETIC_EVAL_TOKENS = 256
FETCH_REPO = "swreg-bench/smollm2-with-duplicates"


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
}


def synthetic_checkpoint(shape: SyntheticShape) -> Path:
    """Build (once, cached) the synthetic checkpoint for `shape`."""
    import torch

    from workers.fixtures.planted import Plant
    from workers.fixtures.synthetic_llama import build_synthetic_llama

    target = cache_root() / "bench" / f"synthetic-{shape.name}-{shape.hidden}x{shape.d_ff}x{shape.layers}"
    if (target / "config.json").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    plant = Plant(layer=2, row=shape.hidden // 3, col=shape.d_ff // 5, value=4.0)
    build_synthetic_llama(
        partial,
        hidden_size=shape.hidden,
        intermediate_size=shape.d_ff,
        num_layers=shape.layers,
        num_heads=shape.heads,
        num_kv_heads=shape.kv_heads,
        vocab_size=shape.vocab,
        dtype=getattr(torch, shape.dtype),
        plant=plant,
    )
    partial.rename(target)
    return target


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


class MemoryCap:
    """Run child processes under a memory limit: a cgroup-v1 memory cgroup when this process
    may create one (root on the CI and development machines), else RLIMIT_AS."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.cgroup: Path | None = None
        self.kind = "none"

    def __enter__(self) -> "MemoryCap":
        candidate = CGROUP_V1_MEMORY / f"swreg-bench-{os.getpid()}"
        try:
            candidate.mkdir()
            (candidate / "memory.limit_in_bytes").write_text(str(self.limit))
            # Count swap too where the kernel accounts it, so the cap cannot be dodged by swapping.
            swap = candidate / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(self.limit))
            self.cgroup, self.kind = candidate, "cgroup"
        except OSError:
            if candidate.exists():
                candidate.rmdir()
            self.kind = "rlimit_as"
        return self

    def preexec(self) -> None:  # runs in the child, before exec
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))
        else:
            resource.setrlimit(resource.RLIMIT_AS, (self.limit, self.limit))

    def peak_bytes(self) -> int | None:
        if self.cgroup is None:
            return None
        return int((self.cgroup / "memory.max_usage_in_bytes").read_text())

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
    result: dict | None
    stderr_tail: str
    # ru_maxrss of the whole child process, as the kernel reports it to its parent.
    peak_rss_bytes: int

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result is not None


def run_approach(
    approach: str,
    model_dir: Path,
    device: str,
    eval_tokens: int,
    cap: MemoryCap | None = None,
    file_sha256: dict[str, str] | None = None,
) -> ChildRun:
    """Run one approach in a fresh process and time it from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        out, stderr_path, hashes = (Path(tmp) / n for n in ("result.json", "stderr", "sha256.json"))
        hashes.write_text(json.dumps(file_sha256 or {}))
        command = [
            sys.executable, "-m", "workers.commands.bench", approach, str(model_dir),
            "--device", device, "--eval-tokens", str(eval_tokens), "--out", str(out),
            "--file-sha256", str(hashes),
        ]
        started = time.perf_counter()
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=stderr,
                preexec_fn=cap.preexec if cap else None,  # noqa: PLW1509 (no threads here)
            )
            # wait4 rather than wait: it also gives the child's resource usage.
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        result = json.loads(out.read_text()) if out.is_file() else None
        stderr_tail = stderr_path.read_text()[-2000:]
    return ChildRun(
        approach, wall, process.returncode, result, stderr_tail, usage.ru_maxrss * KIB
    )


def _child(
    approach: str, model_dir: str, device: str, eval_tokens: int, out: str, file_sha256: str
) -> None:
    """Entry point of a timed child process."""
    import torch

    from workers.science.pipeline.naive import analyse_naive
    from workers.science.pipeline.steps import AnalysisOptions
    from workers.science.pipeline.sweep import analyse

    known = json.loads(Path(file_sha256).read_text()) if file_sha256 else None
    options = AnalysisOptions(device=device, eval_tokens=eval_tokens, file_sha256=known or None)
    run = analyse if approach == "swreg" else analyse_naive
    report = run(model_dir, options).as_json_dict()
    gpu_peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    Path(out).write_text(
        json.dumps(
            {
                "report": report,
                "peak_host_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB,
                "peak_gpu_bytes": gpu_peak,
            }
        )
    )


def _verdicts(report: dict) -> list[tuple]:
    parsed = Report.model_validate(report)
    return [(sw.tensor, tuple(sw.index), sw.state) for sw in parsed.super_weights]


def agreement(a: dict, b: dict) -> dict:
    """Do two reports name the same coordinates with the same verdicts and perplexities?"""
    same = _verdicts(a) == _verdicts(b)
    worst = 0.0
    pairs = zip(Report.model_validate(a).super_weights, Report.model_validate(b).super_weights)
    for x, y in pairs:
        vx, vy = x.evidence.validation, y.evidence.validation
        if vx and vy:
            for px, py in (
                (vx.baseline.perplexity, vy.baseline.perplexity),
                (vx.ablated.perplexity, vy.ablated.perplexity),
                (vx.restored.perplexity, vy.restored.perplexity),
            ):
                worst = max(worst, abs(px - py) / py)
    return {"same_coordinates_and_verdicts": same, "max_relative_perplexity_difference": worst}


def _fmt_bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f} MiB"


def file_hashes(model_dir: Path) -> dict[str, str]:
    from workers.science.checkpoint import sha256_of

    return {file.name: sha256_of(file) for file in weight_files(model_dir)}


def compare(model_dir: Path, device: str, eval_tokens: int) -> dict:
    files = weight_files(model_dir)
    read_cold, total = read_once(files, cold=True)
    read_warm, _ = read_once(files, cold=False)
    hashes = file_hashes(model_dir)
    evict_from_page_cache(files)
    naive = run_approach("naive", model_dir, device, eval_tokens, file_sha256=hashes)
    evict_from_page_cache(files)
    swreg = run_approach("swreg", model_dir, device, eval_tokens, file_sha256=hashes)
    figures = {
        "checkpoint": str(model_dir),
        "checkpoint_bytes": total,
        "read_once_cold_s": read_cold,
        "read_once_warm_s": read_warm,
        "eval_tokens": eval_tokens,
    }
    for run in (naive, swreg):
        figures[run.approach] = {
            "ok": run.ok,
            "wall_s": run.wall_seconds,
            "peak_host_bytes": run.peak_rss_bytes,
            "peak_host_bytes_self_reported": run.result and run.result["peak_host_bytes"],
            "peak_gpu_bytes": run.result and run.result["peak_gpu_bytes"],
            "bytes_read": run.result and run.result["report"]["bytes_read"],
            "timings": run.result and run.result["report"]["timings"],
            "super_weights": run.result and [list(v) for v in _verdicts(run.result["report"])],
            "error": None if run.ok else run.stderr_tail.strip().splitlines()[-1:],
        }
    if naive.ok and swreg.ok:
        figures["swreg_over_naive"] = swreg.wall_seconds / naive.wall_seconds
        figures["swreg_over_read_cold"] = swreg.wall_seconds / read_cold
        figures["agreement"] = agreement(swreg.result["report"], naive.result["report"])
    return figures


def memory_capped(model_dir: Path, device: str, eval_tokens: int, cap_bytes: int) -> dict:
    size = sum(f.stat().st_size for f in weight_files(model_dir))
    figures = {"checkpoint": str(model_dir), "checkpoint_bytes": size, "cap_bytes": cap_bytes}
    hashes = file_hashes(model_dir)
    for approach in ("swreg", "naive"):
        evict_from_page_cache(weight_files(model_dir))
        with MemoryCap(cap_bytes) as cap:
            run = run_approach(approach, model_dir, device, eval_tokens, cap, file_sha256=hashes)
            figures["cap_kind"] = cap.kind
            figures[approach] = {
                "ok": run.ok,
                "returncode": run.returncode,
                "wall_s": run.wall_seconds,
                "peak_host_bytes": run.peak_rss_bytes,
                "cgroup_peak_bytes": cap.peak_bytes(),
                "super_weights": run.result and [list(v) for v in _verdicts(run.result["report"])],
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


def print_comparison(title: str, f: dict) -> None:
    click.echo(f"\n== {title}: {f['checkpoint']} ({f['checkpoint_bytes'] / GIB:.2f} GiB) ==")
    click.echo(
        f"read once: {f['read_once_cold_s']:.2f} s cold, {f['read_once_warm_s']:.2f} s warm; "
        f"eval tokens {f['eval_tokens']}"
    )
    click.echo(f"{'approach':<10} {'wall s':>8} {'peak host':>12} {'peak GPU':>12} {'bytes read':>12}  result")
    for name in ("naive", "swreg"):
        r = f[name]
        result = r["super_weights"] if r["ok"] else f"FAILED {r['error']}"
        click.echo(
            f"{name:<10} {r['wall_s']:>8.1f} {_fmt_bytes(r['peak_host_bytes']):>12} "
            f"{_fmt_bytes(r['peak_gpu_bytes']):>12} {_fmt_bytes(r['bytes_read']):>12}  {result}"
        )
    if "swreg_over_naive" in f:
        click.echo(
            f"swreg / naive = {f['swreg_over_naive']:.2f}; "
            f"swreg / read once cold = {f['swreg_over_read_cold']:.2f}; agreement {f['agreement']}"
        )


@click.command()
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--smollm2/--no-smollm2", default=True, show_default=True, help="Bench the real SmolLM2-135M.")
@click.option("--synthetic", type=click.Choice([*SHAPES, "none"]), default=None,
              help="Synthetic checkpoint shape (default: cpu on the CPU, 7b on CUDA).")
@click.option("--memory-cap-gib", type=float, default=1.5, show_default=True,
              help="Memory cap for the capped run on the synthetic checkpoint (0: skip).")
@click.option("--eval-tokens", type=int, default=1024, show_default=True,
              help="Evaluation tokens for SmolLM2.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write every figure here.")
def bench(device, smollm2, synthetic, memory_cap_gib, eval_tokens, json_out) -> None:
    """Time swreg's one-sweep job against the naive approach and print the figures."""
    figures: dict = {"device": device}
    if smollm2:
        from workers.fixtures.smollm2 import smollm2_dir

        path = smollm2_dir()
        figures["smollm2"] = compare(path, device, eval_tokens)
        print_comparison("SmolLM2-135M-Instruct", figures["smollm2"])
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
        tokens = SYNTHETIC_EVAL_TOKENS
        figures["synthetic"] = compare(path, device, tokens)
        print_comparison(f"synthetic {shape_name}", figures["synthetic"])
        if memory_cap_gib > 0 and device == "cpu":
            capped = memory_capped(path, device, tokens, int(memory_cap_gib * GIB))
            figures["memory_capped"] = capped
            click.echo(
                f"\nunder a {memory_cap_gib:.2f} GiB cap ({capped['cap_kind']}) on a "
                f"{capped['checkpoint_bytes'] / GIB:.2f} GiB checkpoint:"
            )
            for name in ("swreg", "naive"):
                r = capped[name]
                state = "completed" if r["ok"] else f"failed (exit {r['returncode']})"
                click.echo(
                    f"  {name:<10} {state}, {r['wall_s']:.1f} s, peak host {_fmt_bytes(r['peak_host_bytes'])}, "
                    f"cgroup peak {_fmt_bytes(r['cgroup_peak_bytes'])}, {r['super_weights']}"
                )
    if json_out:
        Path(json_out).write_text(json.dumps(figures, indent=2))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="swreg bench child process")
    parser.add_argument("approach", choices=["swreg", "naive", "fetch"])
    parser.add_argument("model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-tokens", type=int, default=1024)
    parser.add_argument("--revision")
    parser.add_argument("--cache")
    parser.add_argument("--out", required=True)
    parser.add_argument("--file-sha256", help="JSON file: weight file name -> known sha256")
    args = parser.parse_args()
    if args.approach == "fetch":
        _fetch_child(args.model, args.revision, args.cache, args.out)
    else:
        _child(
            args.approach, args.model, args.device, args.eval_tokens, args.out, args.file_sha256
        )


if __name__ == "__main__":
    main()
