"""`swreg bench`'s machinery on a tiny model: both approaches run in their own processes, their
figures are printed, and they agree."""

from workers.commands.bench import compare, read_once, weight_files


def test_read_once_reads_every_byte(planted_models):
    path = planted_models("llama").path
    seconds, total = read_once(weight_files(path), cold=True)
    assert total == sum(f.stat().st_size for f in weight_files(path))
    assert seconds > 0


def test_compare_runs_both_approaches_and_they_agree(planted_models):
    figures = compare(planted_models("gpt2").path, "cpu", eval_tokens=128)
    assert figures["naive"]["ok"] and figures["swreg"]["ok"], figures
    assert figures["agreement"]["same_coordinates_and_verdicts"]
    assert figures["agreement"]["max_relative_perplexity_difference"] < 1e-4
    for approach in ("naive", "swreg"):
        assert figures[approach]["peak_host_bytes"] > 0
        assert figures[approach]["bytes_read"] <= figures["checkpoint_bytes"]
    verified = [sw for sw in figures["swreg"]["super_weights"] if sw[2] == "verified"]
    assert len(verified) == 2
