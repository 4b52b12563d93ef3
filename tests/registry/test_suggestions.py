"""Did you mean: a mistyped command or model id is refused with the closest known names."""

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.cli import main
from registry.suggestions import close_matches, did_you_mean


def run(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="swreg", catch_exceptions=False)


def test_close_matches_compare_without_case_and_by_name_alone():
    known = ["huggyllama/llama-7b", "huggyllama/llama-13b", "allenai/OLMo-1B-0724-hf"]
    assert close_matches("huggyllama/lama-7b", known)[0] == "huggyllama/llama-7b"
    assert close_matches("llama-7b", known)[0] == "huggyllama/llama-7b"
    assert close_matches("ALLENAI/olmo-1b-0724-hf", known) == ["allenai/OLMo-1B-0724-hf"]
    assert did_you_mean("nobody/nothing", known) == ""


@pytest.mark.parametrize(
    ("typed", "meant"), [("lookp", "'lookup'"), ("lst", "'list'"), ("sumbit", "'submit'")]
)
def test_a_mistyped_command_is_one_line_with_the_commands_it_is_close_to(typed, meant):
    result = run(typed)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: No such command '{typed}'. Did you mean {meant}? (see 'swreg -h')\n"
    )


def test_a_mistyped_model_id_names_the_models_it_is_close_to(cli_env, db_sessions):
    assert run("setup").exit_code == 0
    result = run("lookup", "huggyllama/lama-7b")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: model not in the registry: huggyllama/lama-7b; did you mean huggyllama/llama-7b?\n"
    )
    with TestClient(create_app(cli_env)) as client:
        answer = client.get("/api/v1/models/meta-llama/Llama-2-7b")
    assert answer.status_code == 404
    assert answer.json()["error"]["message"].endswith("did you mean meta-llama/Llama-2-7b-hf?")
