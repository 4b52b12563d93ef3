"""`swreg bench-cli`: how long `swreg --help` and every `swreg CMD --help` take, start to exit.

Each help is run as a user runs it: the installed `swreg` script (or the one named by `--swreg`,
so that another checkout's script can be measured the same way) in a fresh process, `--runs`
times after one unmeasured warm-up (which fills the operating system's file cache), and the
median wall time is printed. Nothing else is timed: a process's wall time includes the
interpreter's start-up and every import the command needs before it prints its help.

This is a benchmark, not a test: it prints figures and judges nothing.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

# Enough runs for a stable median on a busy two-core machine, few enough to finish in seconds.
DEFAULT_RUNS = 11


def _help_commands() -> list[list[str]]:
    """`swreg` itself, then every command and every subcommand of a group, as argument lists."""
    from registry.cli import every_command

    return [[], *(path.split() for path in every_command())]


def _installed_script() -> Path:
    return Path(sys.executable).with_name("swreg")


def _time(argv: list[str]) -> float | None:
    """Seconds from start to exit; None when the command fails (e.g. it does not exist there)."""
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    return elapsed if result.returncode == 0 else None


@click.command("bench-cli")
@click.option(
    "--runs",
    type=click.IntRange(1, 1000),
    default=DEFAULT_RUNS,
    show_default=True,
    help="Measured runs of each help (after one warm-up run).",
)
@click.option(
    "--swreg",
    "script",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The swreg script to time (default: the one installed beside this Python).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures here.",
)
def bench_cli(runs: int, script: Path | None, json_path: Path | None) -> None:
    """Median wall time of `swreg --help` and of every command's help, each in a fresh process.

    \b
    Examples:
      swreg bench-cli
      swreg bench-cli --runs 31 --json cli-help.json
      swreg bench-cli --swreg ../main/.venv/bin/swreg   # time another checkout's script
    """
    script = script or _installed_script()
    if not script.is_file():
        raise click.BadParameter(f"{script}: no such file", param_hint="--swreg")
    figures: dict[str, float | None] = {}
    click.echo(f"{'command':<30} {'median s':>9} {'min s':>7} {'max s':>7}")
    for argv in _help_commands():
        label = " ".join(["swreg", *argv, "--help"])
        full = [str(script), *argv, "--help"]
        if _time(full) is None:  # warm-up; a command that fails here is not there to time
            figures[label] = None
            click.echo(f"{label:<30} {'fails':>9}")
            continue
        samples = [s for s in (_time(full) for _ in range(runs)) if s is not None]
        figures[label] = statistics.median(samples)
        click.echo(f"{label:<30} {figures[label]:>9.3f} {min(samples):>7.3f} {max(samples):>7.3f}")
    timed = [s for s in figures.values() if s is not None]
    click.echo(f"{runs} run(s) each; slowest median {max(timed):.3f} s; script {script}")
    if json_path:
        document = {"script": str(script), "runs": runs, "median_seconds": figures}
        json_path.write_text(json.dumps(document, indent=2) + "\n")
