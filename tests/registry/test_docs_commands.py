"""The docs' commands run as written: the example model they name is made by
`swreg fetch-example` (no folder that only the tests make), and shell completion works as the
README says."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import main
from tests.helpers import REPO_ROOT, python_env

CACHE_PATH = "~/.cache/swreg/models/SmolLM2-135M-Instruct"


def run(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), prog_name="swreg", env=env, catch_exceptions=False)


@pytest.mark.slow
def test_fetch_example_prints_the_folder_alone_on_stdout(smollm2):
    """(The session's `smollm2` fixture has made the copy: this run prints it at once.)"""
    result = subprocess.run(
        [sys.executable, "-m", "registry.cli", "fetch-example"],
        capture_output=True,
        text=True,
        timeout=1800,
        env=python_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.strip())
    assert result.stdout == f"{folder}\n" and folder == smollm2
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def test_no_doc_names_a_folder_only_the_tests_make():
    """The README and every command's help name the example model through fetch-example."""
    from registry.cli import every_command

    texts = {"README.md": (REPO_ROOT / "README.md").read_text()}
    texts.update(
        {f"swreg {path} -h": command.help or "" for path, command in every_command().items()}
    )
    texts["swreg -h"] = main.help
    for where, text in texts.items():
        assert CACHE_PATH not in text and "~/models/SmolLM2" not in text, where
    assert '"$(swreg fetch-example)"' in main.help


def test_shell_completion_completes_commands_and_options():
    words = run(_SWREG_COMPLETE="bash_complete", COMP_WORDS="swreg loo", COMP_CWORD="1")
    assert words.output.splitlines() == ["plain,lookup"]
    words = run(_SWREG_COMPLETE="bash_complete", COMP_WORDS="swreg lookup --re", COMP_CWORD="2")
    assert words.output.splitlines() == ["plain,--revision"]
    source = run(_SWREG_COMPLETE="bash_source").output
    assert "_swreg_completion" in source and "complete " in source
    # The README's lines are these variables.
    readme = (REPO_ROOT / "README.md").read_text()
    assert {m for m in re.findall(r"_SWREG_COMPLETE=(\w+_source) swreg", readme)} == {
        "bash_source",
        "zsh_source",
        "fish_source",
    }


def _readme_commands() -> list[str]:
    """Every `swreg` command line in the README's shell blocks (`$ .venv/bin/swreg ...`, or a
    bare `.venv/bin/swreg ...` line), as `swreg ...`: each command of a `;` list on its own."""
    found = []
    in_block = False
    for line in (REPO_ROOT / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() in ("```sh", "```bash", "```console")
            continue
        if not in_block:
            continue
        text = line[2:] if line.startswith("$ ") else line
        if ".venv/bin/swreg " not in text or not (
            line.startswith("$ ") or text.startswith(".venv/bin/swreg")
        ):
            continue
        text = text.replace("$(.venv/bin/swreg fetch-example)", "EXAMPLE")
        text = re.sub(r"(^|(?<=[\s=]))\.venv/bin/swreg\b", "swreg", text)
        found += [part.strip() for part in text.split(" ; ")]
    return found


def test_every_swreg_command_in_the_readme_parses():
    """What a reader copies from the README names real commands and options (parsed as swreg
    would, without running them)."""
    import click

    from tests.registry.test_cli_conventions import _argv, _parse

    commands = _readme_commands()
    assert len(commands) >= 20, commands
    for command in commands:
        argv = _argv(command)
        try:
            _parse(argv)
        except click.exceptions.Exit as exc:  # a help: shown, then exit 0
            assert exc.exit_code == 0, command
        except click.BadParameter as exc:  # a file of the reader's that is not here
            assert "does not exist" in exc.format_message(), (command, exc.format_message())
