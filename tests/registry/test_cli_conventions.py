"""What every `swreg` command shares: its summary in the command table, -h, an Examples section
whose examples parse, --json on the read commands, a header on every table, and one exit-code
convention. Each is checked through the real command line (click's runner, or the installed
script where the process boundary matters)."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from registry.cli import COMMANDS, every_command, load_command, main
from workers.contract.resources import PUBLISHED_INDEX_PATH

SWREG = str(Path(sys.executable).with_name("swreg"))

# Every command that only reads, and every command that changes something or runs work. A new
# command must be put in one of them (test_every_command_is_classified), and a read command
# must offer --json.
READ_COMMANDS = {
    "lookup",
    "list",
    "jobs",
    "jobs show",
    "db current",
    "token list",
    "detect",
    "quantize-check",
    "export",
}
OTHER_COMMANDS = {
    "bench",
    "bench-api",
    "bench-cli",
    "bench-registry",
    "db",
    "db upgrade",
    "db downgrade",
    "import",
    "retract",
    "serve",
    "setup",
    "submit",
    "token",
    "token create",
    "token revoke",
    "worker",
    "fetch-example",  # makes the example model (a folder), prints its path
}
# `export` prints the registry as a JSON document already: it has no --json switch.
JSON_BY_NATURE = {"export"}
SHELL_OPERATORS = {">", ">>", "|", "&&", "||", ";"}


PATHS = every_command()


def run(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="swreg", catch_exceptions=False)


# --- the command table ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_summary_is_the_commands_own_first_sentence(name):
    assert COMMANDS[name].summary == load_command(name).get_short_help_str(limit=10_000)


def test_group_help_is_what_click_prints_with_every_command_imported():
    eager = click.Group(
        "swreg",
        help=main.help,
        params=main.params,
        commands={name: load_command(name) for name in COMMANDS},
        context_settings=main.context_settings,
    )
    expected = CliRunner().invoke(eager, ["--help"], prog_name="swreg")
    lazy = CliRunner().invoke(main, ["--help"], prog_name="swreg")
    assert lazy.exit_code == expected.exit_code == 0
    assert lazy.output == expected.output


def test_every_command_is_classified():
    assert set(PATHS) == READ_COMMANDS | OTHER_COMMANDS
    assert not READ_COMMANDS & OTHER_COMMANDS


# --- help: -h and examples --------------------------------------------------------------------


def _examples(help_text: str) -> list[str]:
    """The example command lines of a help text (its `Examples:` section, continuations
    joined)."""
    section = help_text.split("Examples:", 1)[1]
    lines = []
    for line in section.splitlines()[1:]:
        if not line.strip() or not line.startswith("    "):
            break  # the section ends at the first blank or less-indented line
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + line.strip()
        else:
            lines.append(line.strip())
    return lines


def _argv(example: str) -> list[str]:
    """The arguments after `swreg` in one example: no environment prefix, redirect or
    comment."""
    words = shlex.split(example, comments=True)
    while words and "=" in words[0] and words[0] != "swreg":
        words.pop(0)  # VAR=value before the command
    assert words and words[0] == "swreg", example
    words = words[1:]
    for i, word in enumerate(words):
        if word in SHELL_OPERATORS:
            return words[:i]
    return words


def _parse(argv: list[str]) -> str:
    """Parse argv as `swreg` would, down to the command it names, without running it; returns
    that command's path ("jobs show")."""
    command, ctx, names = main, None, []
    args = list(argv)
    while True:
        ctx = command.make_context(names[-1] if names else "swreg", args, parent=ctx)
        if not isinstance(command, click.Group):
            return " ".join(names)
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            return " ".join(names)
        name, command, args = command.resolve_command(ctx, rest)
        names.append(name)


@pytest.mark.parametrize("path", ["", *sorted(PATHS)])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_answers_to_both_flags(path, flag):
    result = run(*path.split(), flag)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(['swreg', *path.split()])} ")
    assert "-h, --help" in result.output


@pytest.mark.parametrize("path", ["", *sorted(PATHS)])
def test_every_help_has_examples_of_itself_that_parse(path):
    help_text = run(*path.split(), "-h").output
    examples = _examples(help_text)
    assert examples, help_text
    for example in examples:
        argv = _argv(example)
        assert argv[: len(path.split())] == path.split(), (path, example)
        try:
            parsed = _parse(argv)
        except click.exceptions.Exit as exc:  # `swreg lookup -h`: the help, then exit 0
            assert exc.exit_code == 0 and "-h" in argv
            continue
        # The command an example names is this one, or one of this group's.
        assert parsed.split()[: len(path.split())] == path.split(), (path, example, parsed)


# --- --json on read commands, headers on tables -----------------------------------------------


@pytest.mark.parametrize("path", sorted(READ_COMMANDS - JSON_BY_NATURE))
def test_read_commands_offer_json(path):
    assert "--json" in {opt for param in PATHS[path].params for opt in param.opts}


@pytest.fixture
def loaded(cli_env):
    result = run("import", str(PUBLISHED_INDEX_PATH))
    assert result.exit_code == 0, result.output
    return cli_env


def test_json_output_parses(loaded, tmp_path):
    model = "huggyllama/llama-7b"
    assert json.loads(run("lookup", model, "--json").stdout)["model_id"] == model
    page = json.loads(run("list", "--json", "--limit", "2").stdout)
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (13, 2, 0, 2)
    assert (
        json.loads(run("list", "--json", "--search", "llama-7b").stdout)["items"][0]["model_id"]
        == model
    )
    assert json.loads(run("jobs", "--json").stdout) == []
    current = json.loads(run("db", "current", "--json").stdout)
    assert current["up_to_date"] is True and current["revisions"] == current["heads"]
    assert run("token", "create", "ci").exit_code == 0
    (token,) = json.loads(run("token", "list", "--json").stdout)
    assert (token["name"], token["last_used_at"], token["revoked_at"]) == ("ci", None, None)
    assert token["created_at"].endswith("+00:00")


def test_list_json_is_the_http_page(loaded):
    from fastapi.testclient import TestClient

    from registry.app import create_app

    with TestClient(create_app(loaded)) as client:
        http = client.get("/api/v1/models", params={"limit": 5, "offset": 1}).json()
    assert json.loads(run("list", "--json", "--limit", "5", "--offset", "1").stdout) == http


def test_every_table_has_a_header(loaded, tmp_path):
    from workers.fixtures.planted import build_planted_model

    assert run("list").stdout.splitlines()[0].split() == [
        "model",
        "revisions",
        "super",
        "weights",
        "states",
    ]
    assert run("lookup", "huggyllama/llama-7b").stdout.splitlines()[1].split()[:4] == [
        "state",
        "layer",
        "tensor",
        "index",
    ]
    model = build_planted_model("llama", tmp_path / "tiny", num_layers=2).path
    assert run("submit", str(model), "--model-id", "me/tiny").exit_code == 0
    header, row = run("jobs").stdout.splitlines()
    assert header.split() == ["id", "state", "attempts", "model@revision", "error"]
    assert row.split()[:3] == ["1", "queued", "0/3"]
    assert run("token", "create", "ci").exit_code == 0
    header, row = run("token", "list").stdout.splitlines()
    assert header.split() == ["name", "prefix", "created", "last", "used", "revoked"]
    assert row.startswith("ci ") and "never used" in row


# --- exit codes -------------------------------------------------------------------------------


def test_exit_codes_follow_one_convention(loaded, tmp_path):
    """0 done; 1 well formed but not carried out; 2 the request itself is wrong. Every error is
    one line on stderr. (3, a job that failed under `submit --wait`, is checked in
    tests/registry/jobs/test_cli.py.)"""
    cases = {
        # usage: click's own errors
        ("lookup", "--bogus"): (2, "error: No such option '--bogus'. (see 'swreg lookup -h')"),
        ("nope",): (2, "error: No such command 'nope'. (see 'swreg -h')"),
        ("lookup",): (2, "error: Missing argument 'MODEL'. (see 'swreg lookup -h')"),
        ("list", "--limit", "0"): (2, "error: Invalid value for '--limit': 0 is not in the"),
        # usage: swreg's InvalidInput
        ("lookup", "a b"): (2, "error: invalid model id 'a b'"),
        ("lookup", "huggyllama/llama-7b", "--revision", "main"): (2, "error: invalid revision"),
        (
            "retract",
            "huggyllama/llama-7b",
            "--revision",
            "unknown",
            "--tensor",
            "t",
            "--index",
            "x,y",
            "--reason",
            "r",
        ): (2, "error: invalid index 'x,y'"),
        ("submit", str(tmp_path / "nowhere")): (2, "error: no such folder"),
        # well formed, not carried out
        ("lookup", "nobody/nothing"): (1, "error: model not in the registry: nobody/nothing"),
        ("jobs", "show", "7"): (1, "error: no job 7"),
        ("token", "revoke", "nobody"): (1, "error: no live token named 'nobody'"),
    }
    for args, (code, start) in cases.items():
        result = run(*args)
        assert (result.exit_code, result.stdout) == (code, ""), (args, result.output)
        assert result.stderr.startswith(start), (args, result.stderr)
        assert result.stderr.count("\n") == 1, (args, result.stderr)
    assert run("token", "create", "ci").exit_code == 0
    twice = run("token", "create", "ci")
    assert (twice.exit_code, twice.stderr.count("\n")) == (1, 1)
    assert twice.stderr.startswith("error: a token named 'ci' exists")


@pytest.mark.parametrize("path", ["", "db", "token"])
def test_a_group_alone_prints_its_help(path):
    result = run(*path.split())
    assert result.exit_code == 2  # click's: a command is missing
    assert "Commands:" in result.output and "Examples:" in result.output


def test_a_refused_checkpoint_is_a_usage_error(cli_env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("submit", str(empty))
    assert result.exit_code == 2 and "no .safetensors weight files" in result.stderr
    assert result.stderr.count("\n") == 1


def test_the_installed_script_exits_with_the_same_codes(loaded):
    env = {**os.environ, "SWREG_DATABASE_URL": loaded}
    for args, code in ((["lookup", "a b"], 2), (["lookup", "nobody/x"], 1), (["-h"], 0)):
        result = subprocess.run([SWREG, *args], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == code, (args, result.stderr)
        assert "Traceback" not in result.stderr


# --- the published index from anywhere --------------------------------------------------------


def test_setup_loads_the_published_index_from_any_folder(empty_db_url, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "SWREG_DATABASE_URL": empty_db_url}
    setup = subprocess.run(
        [SWREG, "setup"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert setup.returncode == 0, setup.stderr
    assert "published index" in setup.stdout and "(33 new," in setup.stdout
    assert "reported super experts 6 model revisions, 0 coordinates" in setup.stdout
    assert "16 super experts (16 new," in setup.stdout
    listed = subprocess.run(
        [SWREG, "list", "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(listed.stdout)["total"] == 19  # 13 published, 6 with reported super experts
