"""`swreg bench`'s machinery on a tiny model: both approaches run in their own processes, their
figures are measured (bytes read, peak memory) rather than assumed, and they agree; detection
alone is timed through the command line; the memory cap really caps."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from workers.commands.bench.checkpoints import read_once, weight_files
from workers.commands.bench.child import _timed
from workers.commands.bench.figures import compare, compare_detection
from workers.commands.bench.memory import MIB, MemoryCap

# A tensor no layer uses, far larger than any readahead window: reading the checkpoint's files
# whole would count it, reading what the model needs would not.
UNUSED_TENSOR_BYTES = 64 * MIB
# Filesystems with no storage behind them: the kernel counts no reads from them.
MEMORY_FILESYSTEMS = {"tmpfs", "ramfs"}


def _filesystem_of(path: Path) -> str:
    """The type of the filesystem `path` lies on, from /proc/mounts (the longest mount point
    that contains it)."""
    path = path.resolve()
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount_point, fs_type, *_ = line.split()
        if path.is_relative_to(mount_point) and len(mount_point) > len(best):
            best, kind = mount_point, fs_type
    return kind


@pytest.fixture(scope="module")
def with_unused_tensor(planted_models, tmp_path_factory) -> tuple[Path, int]:
    """The planted gpt2 model with one more tensor in its weight file that the model does not
    have (as real checkpoints sometimes carry extra tensors); returns the directory and the size
    of the original weight file."""
    source = planted_models("gpt2").path
    target = tmp_path_factory.mktemp("unused") / "gpt2"
    shutil.copytree(source, target)
    weights = load_file(target / "model.safetensors")
    weights["zz_unused.weight"] = torch.zeros(UNUSED_TENSOR_BYTES // 4, dtype=torch.float32)
    save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target, (source / "model.safetensors").stat().st_size


def test_read_once_reads_every_byte(planted_models):
    path = planted_models("llama").path
    seconds, total = read_once(weight_files(path), cold=True)
    assert total == sum(f.stat().st_size for f in weight_files(path))
    assert seconds > 0


def test_compare_runs_both_approaches_measures_them_and_they_agree(with_unused_tensor):
    path, used_file_bytes = with_unused_tensor
    if _filesystem_of(path) in MEMORY_FILESYSTEMS:
        pytest.skip(f"{path} is on {_filesystem_of(path)}: the kernel counts no reads from it")
    figures = compare(path, "cpu", eval_tokens=1024)
    assert figures["naive"]["ok"] and figures["swreg"]["ok"], figures
    assert figures["agreement"] == {
        "same_coordinates_and_verdicts": True,
        "naive_ratio_inside_swreg_interval": True,
    }
    verified = [sw for sw in figures["swreg"]["super_weights"] if sw[2] == "verified"]
    assert len(verified) == 2
    assert figures["checkpoint_bytes"] >= used_file_bytes + UNUSED_TENSOR_BYTES
    swreg_tokens, naive_tokens = (
        figures["swreg"]["variant_tokens"],
        figures["naive"]["variant_tokens"],
    )
    assert naive_tokens["scored"] == naive_tokens["on_whole_budget"]
    assert swreg_tokens["scored"] < swreg_tokens["on_whole_budget"]

    # Bytes read are measured: each approach read the model's tensors (the streamed job once per
    # round over the layers), and not the tensor the model does not use, though it lies in the
    # same file.
    for approach, passes in (("naive", 1), ("swreg", swreg_tokens["rounds"])):
        read = figures[approach]["bytes_read"]
        assert 0.9 * used_file_bytes <= read, (approach, read)
        assert read < passes * used_file_bytes + UNUSED_TENSOR_BYTES / 4, (approach, read)
        # Peak memory is the kernel's figure for the whole child (wait4): a fresh Python process
        # that imported torch holds hundreds of MiB.
        assert figures[approach]["peak_host_bytes"] > 100 * MIB, approach


def test_detection_alone_is_timed_through_the_command_line(planted_models):
    figures = compare_detection(planted_models("gpt2").path, "cpu", repeats=1)
    assert figures["naive"]["ok"] and figures["swreg"]["ok"], figures
    assert figures["same_candidates"]
    assert all(sw[2] == "candidate" for sw in figures["swreg"]["super_weights"])


def test_the_memory_cap_stops_a_process_that_needs_more():
    grab = [
        sys.executable,
        "-c",
        "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])",
    ]
    with MemoryCap(200 * MIB) as cap:
        capped = subprocess.run(grab, preexec_fn=cap.preexec, capture_output=True, check=False)
        assert cap.kind in ("cgroup-v2", "cgroup-v1", "rlimit-as") and cap.label
    assert capped.returncode != 0
    assert subprocess.run(grab, check=False).returncode == 0


def test_a_child_s_peak_memory_is_its_own_not_the_bench_s(tmp_path):
    """The bench itself may hold gigabytes (a generated checkpoint) when it starts a child; the
    child's figure must be what the child used: a child that touches 64 MiB reports about that,
    while this process holds 512 MiB more."""
    held = bytearray(512 * 2**20)
    held[::4096] = b"x" * len(held[::4096])  # touch every page: resident
    # The child holds its memory a moment: the bench reads the peak while a child runs (a real
    # child runs for seconds; growth in its last poll interval before exiting is not seen).
    command = [
        sys.executable,
        "-c",
        "import time; x = bytearray(64 * 2**20); x[::4096] = b'y' * len(x[::4096]); time.sleep(0.5)",
    ]
    wall, code, peak, _, _ = _timed(command, None, tmp_path / "none.json")
    assert code == 0
    assert 64 * 2**20 < peak < 256 * 2**20
    del held
