"""Every sequence fits the model: the context cap read from the config, evaluation windows no
longer than it nor than `--eval-tokens` asks, and a model too short to judge refused in one line."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from transformers import AutoConfig

from registry.cli import main
from workers.fixtures.planted import build_planted_model
from workers.science.context import MIN_CONTEXT_TOKENS, model_context
from workers.science.evaluation import DEFAULT_EVAL_TOKENS, eval_windows
from workers.science.pipeline.steps import AnalysisOptions
from workers.science.pipeline.sweep import analyse

SHORT_CONTEXT = 256  # a GPT-2 whose position table is a quarter of swreg's 1,024-token window

pytestmark = pytest.mark.usefixtures("one_thread")


def _context(model_type: str, **config):
    return model_context(AutoConfig.for_model(model_type, **config).to_dict())


def test_the_cap_is_the_position_table():
    assert _context("llama", max_position_embeddings=4096) == (4096, "max_position_embeddings")
    assert _context("gpt2", n_positions=256) == (256, "n_positions")


def test_a_sliding_window_is_no_cap():
    # A sliding window limits what one layer attends to, not how long a sequence the model takes.
    # Mistral-7B-v0.1: 4,096-token sliding window on every layer, 32k positions.
    assert _context("mistral", max_position_embeddings=32768, sliding_window=4096) == (
        32768,
        "max_position_embeddings",
    )
    # A Gemma-3-style config with 256 positions and a 32-token window (issue 18): 256, not 32.
    assert _context("gemma3_text", max_position_embeddings=256, sliding_window=32) == (
        256,
        "max_position_embeddings",
    )
    # gpt-oss: a 128-token window on half its layers.
    assert _context("gpt_oss", max_position_embeddings=4096, sliding_window=128) == (
        4096,
        "max_position_embeddings",
    )


def _lengths(windows) -> list[int]:
    return [w.shape[1] for w in windows]


def test_windows_hold_exactly_the_tokens_asked_for():
    text = list(range(1000, 4000))
    assert _lengths(eval_windows(text, 1024, 100)) == [100]
    assert _lengths(eval_windows(text, 1024, 2500)) == [1024, 1024, 452]
    assert _lengths(eval_windows(text, 256, 1024)) == [256] * 4
    # Each window starts with the tokenizer's prefix (a BOS token here), counted in its length.
    windows = eval_windows(text, 256, 600, prefix=[7])
    assert _lengths(windows) == [256, 256, 88]
    assert all(w[0, 0].item() == 7 for w in windows)
    assert [t for w in windows for t in w[0, 1:].tolist()] == text[: 600 - 3]
    # A text shorter than asked is scored whole.
    assert _lengths(eval_windows(text[:300], 1024, 5000)) == [300]


@pytest.fixture(scope="module")
def short_gpt2(tmp_path_factory):
    return build_planted_model("gpt2", tmp_path_factory.mktemp("gpt2-256"), positions=SHORT_CONTEXT)


def test_the_short_context_gpt2_runs_to_a_report(short_gpt2):
    report = analyse(short_gpt2.path, AnalysisOptions()).as_json_dict()
    evaluation = report["eval"]
    assert (evaluation["context_tokens"], evaluation["context_source"]) == (
        SHORT_CONTEXT,
        "n_positions",
    )
    # The default 1,024 tokens, in windows the model can take.
    assert evaluation["tokens"] == DEFAULT_EVAL_TOKENS
    assert evaluation["window_tokens"] == SHORT_CONTEXT and evaluation["windows"] == 4
    verified = {
        (sw["layer"], sw["row"], sw["col"])
        for sw in report["super_weights"]
        if sw["state"] == "verified"
    }
    assert verified == {(p.layer, p.row, p.col) for p in short_gpt2.plants}


def test_prompts_longer_than_the_context_are_cut(short_gpt2):
    long_prompt = "The lighthouse keeper climbed the stairs. " * 20  # 840 bytes
    report = analyse(short_gpt2.path, AnalysisOptions(validate=False, prompts=[long_prompt]))
    assert report.prompts[0] == long_prompt[: SHORT_CONTEXT - 1]  # the BOS token is the 256th
    assert report.profile[1].spike


def _detect(*args: str) -> dict:
    result = CliRunner().invoke(main, ["detect", *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_eval_tokens_is_honoured_exactly(short_gpt2):
    """The budget is the windows' tokens; the exhaustive evaluation scores all of it (the
    sequential one stops a clear verdict earlier)."""
    report = _detect(str(short_gpt2.path), "--eval-tokens", "300", "--exhaustive")
    assert (report["eval"]["tokens"], report["eval"]["windows"]) == (300, 2)  # 256 + 44
    assert report["eval"]["window_tokens"] == SHORT_CONTEXT
    validation = report["super_weights"][0]["evidence"]["validation"]
    assert validation["baseline"]["tokens"] == 300 - 2  # one prediction fewer than tokens a window
    small = _detect(str(short_gpt2.path), "--eval-tokens", "100", "--prompt", "Hello there.")
    assert (small["eval"]["tokens"], small["eval"]["windows"], small["eval"]["window_tokens"]) == (
        100,
        1,
        100,
    )


def test_a_model_too_short_to_judge_is_refused_in_one_line(tmp_path):
    tiny = build_planted_model("gpt2", tmp_path / "gpt2-16", positions=16)
    result = subprocess.run(
        [sys.executable, "-m", "registry.cli", "detect", str(tiny.path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert f"context is 16 tokens (n_positions), shorter than the {MIN_CONTEXT_TOKENS}" in lines[0]
