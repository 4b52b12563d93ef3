"""`swreg quantize-check` on the real SmolLM2-135M-Instruct (slow) and on a planted model: with the
default clipping rule, keeping the verified super weight in full precision gives a clearly lower
perplexity than clipping it like the rest; the table and the JSON say what was kept and why."""

import json
import re

import pytest
from click.testing import CliRunner

from registry.cli import main
from workers.contract.quantization import QuantizationCheck
from workers.sources.pinning import hash_local_weights, local_revision

SUPER_WEIGHT = {
    "tensor": "model.layers.11.mlp.down_proj.weight",
    "index": [507, 1229],
    "layer": 11,
    "module": "mlp.down_proj",
    "row": 507,
    "col": 1229,
    "value": 5.875732421875,
    "dtype": "float32",
    "state": "verified",
}


def _index_file(path, model_id: str, revision: str, coordinates: list[dict]):
    """An index document holding `coordinates` for one revision (as `swreg export` writes them,
    minus the optional fields)."""
    path.write_text(
        json.dumps(
            {
                "meta": {
                    "schema_version": 1,
                    "generated_at": "2026-01-01T00:00:00Z",
                    "generator": {"name": "swreg", "version": "test"},
                },
                "models": [
                    {
                        "model_id": model_id,
                        "revision": revision,
                        "revision_kind": "content",
                        "super_weights": coordinates,
                    }
                ],
            }
        )
    )
    return path


def _run(*args: str) -> QuantizationCheck:
    result = CliRunner().invoke(main, ["quantize-check", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return QuantizationCheck.model_validate_json(result.stdout)


@pytest.mark.slow
def test_smollm2_keeping_the_verified_super_weight_beats_clipping_it(smollm2, tmp_path):
    revision = local_revision(hash_local_weights(smollm2))
    index = _index_file(tmp_path / "index.json", "local/smollm2", revision, [SUPER_WEIGHT])
    # int4 in blocks of 64, every linear weight of the decoder layers: the two variants that
    # differ only in the kept weight (3 passes with the baseline: 22 s on two idle cores).
    check = _run(
        str(smollm2),
        "--index",
        str(index),
        "--bits",
        "4",
        "--block",
        "64",
        "--variant",
        "clip",
        "--variant",
        "clip_keep",
    )
    assert check.kept_from == "index"
    assert [(k.tensor, k.index) for k in check.kept] == [
        (SUPER_WEIGHT["tensor"], SUPER_WEIGHT["index"])
    ]
    assert check.weights == "all" and check.matrices == 30 * 7
    assert check.clip_rule.rms_multiple == 10.0
    results = {r.variant: r for r in check.results}
    # Measured (data/eval's first 1,024 tokens in four 256-token windows, full precision
    # 30.36): clip 311.25, clip_keep 89.01. Keeping the one weight takes away over two thirds of
    # the damage: bound at half.
    assert check.baseline.perplexity == pytest.approx(30.36, abs=0.01)
    assert results["clip_keep"].perplexity < 0.5 * results["clip"].perplexity
    assert results["clip_keep"].perplexity > check.baseline.perplexity


def test_the_table_says_what_was_kept_and_from_where(planted_models, tmp_path):
    """No source of super weights named: detection finds and verifies them first."""
    planted = planted_models("llama")
    result = CliRunner().invoke(
        main,
        [
            "quantize-check",
            str(planted.path),
            "--weights",
            "down_proj",
            "--bits",
            "3",
            "--block",
            "64",
            "--block",
            "row",
            "--eval-tokens",
            "256",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    kept = ", ".join(
        f"{planted.down_proj_tensor(p.layer)} [{p.row}, {p.col}]" for p in planted.plants
    )
    assert f"kept in full precision by clip_keep: {kept} (from detection)" in lines
    assert "clipping: |w| clipped at 10 x each matrix's root mean square" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("bits"))
    assert lines[header].split() == ["bits", "block", "absmax", "clip", "clip_keep"]
    rows = [line.split() for line in lines[header + 2 :]]
    assert [r[:2] for r in rows] == [["int3", "64"], ["int3", "row"]]
    for row in rows:
        # Per variant: perplexity, ratio to full precision, its interval, stop-word probability.
        absmax, clip, clip_keep = float(row[2]), float(row[6]), float(row[10])
        assert clip > 1000 * clip_keep and absmax < 2 * clip_keep
        assert row[7].startswith("x") and row[8].startswith("(") and row[8].endswith(")")
    # Not a terminal: every stage in plain lines, the detection that finds the weights to keep
    # named apart, each stage ending with its seconds.
    progress = result.stderr.splitlines()
    assert "finding the super weights to keep: detection and validation" in progress
    finished = {line.rsplit(" ", 3)[0].strip() for line in progress if line.endswith(" s)")}
    assert {
        "find load",
        "find detect",
        "find validate",
        "find score",
        "load",
        "quantize",
    } <= finished
    assert any(line.startswith("quantize 1/") for line in progress) and "\r" not in result.stderr
    # And the whole run's time left, in lines of its own.
    # (Either the whole run's, measured on earlier runs of its kind, or, with none yet, the
    # current stage's alone, said as such.)
    overall = [line for line in progress if line.startswith("all ")]
    whole = re.compile(r"all +~\d+ s left")
    stage_only = re.compile(
        r"all +\? \(no earlier run to measure on; [\w ]+ ~\d+ s left at its pace\)"
    )
    assert overall and all(whole.fullmatch(x) or stage_only.fullmatch(x) for x in overall), overall


def test_every_result_carries_its_interval_and_goes_to_the_results_file(planted_models, tmp_path):
    """Each setting's perplexity ratio to full precision comes with its confidence interval,
    which holds the ratio; `--output-path` writes the same document `--json` prints."""
    planted = planted_models("llama")
    out = tmp_path / "results.json"
    args = [
        str(planted.path),
        "--weights",
        "down_proj",
        "--bits",
        "4",
        "--block",
        "64",
        "--eval-tokens",
        "512",
        "--output-path",
        str(out),
    ]
    check = _run(*args)
    assert out.read_text() == check.dumps() + "\n"
    assert not list(tmp_path.glob("*.partial"))
    for result in check.results:
        assert result.interval is not None and result.interval.blocks >= 2
        assert result.interval.low <= result.ratio <= result.interval.high
    clip = next(r for r in check.results if r.variant == "clip")
    assert clip.interval.low > 1.0  # clipping the super weight away shows, with its interval


def test_a_results_file_in_no_folder_is_refused_in_one_line_before_any_work(
    planted_models, tmp_path
):
    planted = planted_models("llama")
    target = tmp_path / "missing-folder" / "results.json"
    result = CliRunner().invoke(
        main,
        [
            "quantize-check",
            str(planted.path),
            "--weights",
            "down_proj",
            "--bits",
            "4",
            "--block",
            "64",
            "--variant",
            "absmax",
            "--eval-tokens",
            "256",
            "--output-path",
            str(target),
        ],
    )
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"error: cannot write {target}: no folder {target.parent}"
    ]


def test_a_source_without_the_revision_falls_back_to_detection(planted_models, tmp_path):
    planted = planted_models("gpt2")
    other = "sha256:" + "0" * 64
    index = _index_file(tmp_path / "index.json", "me/other", other, [])
    check = _run(
        str(planted.path),
        "--index",
        str(index),
        "--weights",
        "down_proj",
        "--bits",
        "4",
        "--block",
        "64",
        "--variant",
        "clip_keep",
        "--eval-tokens",
        "256",
    )
    assert check.kept_from == "detection"
    assert {(k.layer, k.row, k.col) for k in check.kept} == {
        (p.layer, p.row, p.col) for p in planted.plants
    }
    # GPT-2's Conv1D stores the down projection [in, out]: the kept index is [col, row].
    assert all(k.index == [k.col, k.row] for k in check.kept)
    (result,) = check.results
    assert result.perplexity < 1.1 * check.baseline.perplexity


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index", "a.json", "--registry"], "name one source of super weights"),
        (["--clip-rms-multiple", "5", "--clip-quantile", "0.9"], "are two rules: pick one"),
        (["--block", "zero"], "a block is a number of input channels or 'row'"),
        (["--block", "0"], "a block holds at least one weight"),
    ],
)
def test_bad_options_are_one_line(planted_models, args, message):
    result = CliRunner().invoke(main, ["quantize-check", str(planted_models("llama").path), *args])
    assert result.exit_code == 2 and message in result.output
