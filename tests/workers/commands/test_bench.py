"""`swreg bench`'s machinery on a tiny model: both approaches run in their own processes, their
figures are measured from outside, and they agree; detection alone is timed through the command
line; the memory cap really caps."""

import subprocess
import sys

from workers.commands.bench import MemoryCap, compare, compare_detection, read_once, weight_files

MIB = 1024**2


def test_read_once_reads_every_byte(planted_models):
    path = planted_models("llama").path
    seconds, total = read_once(weight_files(path), cold=True)
    assert total == sum(f.stat().st_size for f in weight_files(path))
    assert seconds > 0


def test_compare_runs_both_approaches_and_they_agree(planted_models):
    figures = compare(planted_models("gpt2").path, "cpu", eval_tokens=1024)
    assert figures["naive"]["ok"] and figures["swreg"]["ok"], figures
    assert figures["agreement"] == {
        "same_coordinates_and_verdicts": True, "naive_ratio_inside_swreg_interval": True,
    }
    for approach in ("naive", "swreg"):
        assert figures[approach]["peak_host_bytes"] > 0
    assert figures["naive"]["bytes_read"] <= figures["checkpoint_bytes"]
    swreg_tokens, naive_tokens = figures["swreg"]["variant_tokens"], figures["naive"]["variant_tokens"]
    # Each round of the streamed job reads the layers it needs once.
    assert figures["swreg"]["bytes_read"] <= swreg_tokens["rounds"] * figures["checkpoint_bytes"]
    assert naive_tokens["scored"] == naive_tokens["on_whole_budget"]
    assert swreg_tokens["scored"] < swreg_tokens["on_whole_budget"]
    verified = [sw for sw in figures["swreg"]["super_weights"] if sw[2] == "verified"]
    assert len(verified) == 2


def test_detection_alone_is_timed_through_the_command_line(planted_models):
    figures = compare_detection(planted_models("gpt2").path, "cpu", repeats=1)
    assert figures["naive"]["ok"] and figures["swreg"]["ok"], figures
    assert figures["same_candidates"]
    assert all(sw[2] == "candidate" for sw in figures["swreg"]["super_weights"])


def test_the_memory_cap_stops_a_process_that_needs_more():
    grab = [sys.executable, "-c", "b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"]
    with MemoryCap(200 * MIB) as cap:
        capped = subprocess.run(grab, preexec_fn=cap.preexec, capture_output=True, check=False)
        assert cap.kind in ("cgroup-v2", "cgroup-v1", "rlimit-as") and cap.label
    assert capped.returncode != 0
    assert subprocess.run(grab, check=False).returncode == 0
