"""Mutation testing of the modules that hold swreg's guarantees, one module group at a time.

`make mutate` runs this (slow: minutes to a quarter of an hour per module on two cores; not part
of CI). For each group it runs mutmut in its own work folder, build/mutation/NAME, whose
pyproject.toml is the repository's plus a [tool.mutmut] section naming only that group's files
to mutate and only the fast tests that exercise them (SQLite only; no slow model, browser or
PostgreSQL tests), so a mutant of the queue never waits for the worker's end-to-end tests.
mutmut then runs, for each mutant, only those of the selected tests that called the mutated
function.

Usage: python tools/mutate.py [--jobs N] [--fresh] [GROUP ...]   (default: every group)
       python tools/mutate.py --survivors GROUP    lists the mutants that were not killed

The score of a group is killed / (mutants - equivalent), where the equivalent mutants (changes
that cannot alter behaviour; each with its reason) are listed in docs/mutation.md. A mutant that
no selected test reaches ("no tests") counts as surviving.
"""

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK_ROOT = REPO_ROOT / "build" / "mutation"
EQUIVALENTS_DOC = REPO_ROOT / "docs" / "mutation.md"
# What the work folder sees of the repository (as links): the packages, the tests and the data
# the packages' links point at.
LINKED = ("registry", "workers", "swreg", "tests", "data", "migrations")
# mutmut copies the packages by walking them and skips links to folders inside them; these are
# the packages' own links (to the top-level data/ and migrations/), copied as folders.
PACKAGE_LINKS = ("registry/migrations", "workers/contract/data")
# Only what a fast, SQLite-only run needs.
FAST_ONLY = "not postgres and not slow and not browser"
# mutmut's exit codes by outcome (mutmut/stats.py): a test failure or a timeout kills the mutant.
KILLED_CODES = {1, 3, 24, -24, 152, 255, 36, 37}
SURVIVED_CODE = 0
NO_TESTS_CODES = {5, 33}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# An equivalent mutant is listed in docs/mutation.md as a table row starting with its name.
EQUIVALENT_ROW = re.compile(r"^\|\s*`([\w.]+__mutmut_\d+)`", re.MULTILINE)


@dataclass(frozen=True)
class Group:
    name: str
    files: tuple[str, ...]
    tests: tuple[str, ...]


GROUPS = (
    Group("queue", ("registry/jobs/queue.py",), ("tests/registry/jobs/test_queue.py",)),
    Group(
        "hub",
        ("workers/sources/hub.py", "workers/sources/listing.py", "workers/sources/pinning.py"),
        ("tests/workers/sources",),
    ),
    Group(
        "detection",
        ("workers/science/detection.py",),
        ("tests/workers/science/test_detection_rules.py",),
    ),
    Group(
        "validation",
        ("workers/science/validation/*.py",),
        ("tests/workers/science/validation",),
    ),
    Group(
        "index",
        ("registry/index/*.py",),
        (
            "tests/registry/index",
            "tests/swreg/test_index.py",
            "tests/registry/test_api.py::test_index_download_is_the_export",
        ),
    ),
    Group(
        "worker-loop",
        ("workers/worker/loop.py",),
        (
            "tests/workers/worker/test_loop_parts.py",
            "tests/workers/worker/test_loop_writes.py",
            "tests/workers/worker/test_loop_run.py",
            "tests/workers/worker/test_worker.py",
            "tests/workers/worker/test_leases.py",
            "tests/workers/worker/test_progress.py",
            "tests/workers/worker/test_outages.py",
        ),
    ),
)


def _toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(item)) for item in items) + "]"


def prepare(group: Group, fresh: bool) -> Path:
    work = WORK_ROOT / group.name
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = work / name
        if not link.is_symlink():
            link.symlink_to(REPO_ROOT / name)
    config = "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["registry", "workers"]',
            f"only_mutate = {_toml_list(group.files)}",
            f"also_copy = {_toml_list(PACKAGE_LINKS)}",
            f"pytest_add_cli_args = {_toml_list(['-m', FAST_ONLY, '-p', 'no:cacheprovider'])}",
            f"pytest_add_cli_args_test_selection = {_toml_list(group.tests)}",
            "",
        ]
    )
    (work / "pyproject.toml").write_text((REPO_ROOT / "pyproject.toml").read_text() + config)
    return work


def exit_codes(group: Group) -> dict[str, int | None]:
    """Each mutant of the group with mutmut's exit code for it (None: not run yet)."""
    codes: dict[str, int | None] = {}
    for meta in sorted((WORK_ROOT / group.name / "mutants").rglob("*.py.meta")):
        source = meta.relative_to(WORK_ROOT / group.name / "mutants").with_suffix("")
        # The patterns are mutmut's own (fnmatch: `*` spans folders too).
        if any(fnmatch.fnmatch(source.as_posix(), pattern) for pattern in group.files):
            codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def equivalents() -> set[str]:
    if not EQUIVALENTS_DOC.exists():
        return set()
    return set(EQUIVALENT_ROW.findall(EQUIVALENTS_DOC.read_text()))


def score_line(group: Group) -> str:
    codes = exit_codes(group)
    # A listed mutant that a test kills after all counts as killed, not as excluded.
    excluded = {n for n in equivalents() & set(codes) if codes[n] not in KILLED_CODES}
    killed = sum(code in KILLED_CODES for code in codes.values())
    counted = len(codes) - len(excluded)
    survived = sum(code == SURVIVED_CODE for code in codes.values())
    no_tests = sum(code in NO_TESTS_CODES for code in codes.values())
    other = len(codes) - killed - survived - no_tests
    raw = 100.0 * killed / len(codes) if codes else 0.0
    score = 100.0 * killed / counted if counted else 0.0
    return (
        f"{group.name:<12} {score:6.1f}%  killed {killed:>4} of {counted:<4}"
        f" ({len(codes)} mutants, {len(excluded)} listed as equivalent; raw {raw:.1f}%)"
        f"  survived {survived}, no tests {no_tests}, other {other}"
    )


def survivors(group: Group) -> list[str]:
    equivalent = equivalents()
    return sorted(
        name
        for name, code in exit_codes(group).items()
        if code not in KILLED_CODES and name not in equivalent
    )


def run(group: Group, jobs: int, fresh: bool) -> int:
    work = prepare(group, fresh)
    mutmut = Path(sys.executable).parent / "mutmut"
    print(f"== {group.name}: mutating {', '.join(group.files)}", flush=True)
    return subprocess.call(
        [str(mutmut), "run", "--max-children", str(jobs)], cwd=work, env=_one_thread_each()
    )


def _one_thread_each() -> dict[str, str]:
    """torch's thread pool, in a forked mutant process, burns CPU time on every thread: mutmut's
    CPU-time limit then stops mutants that were only slow (false "timeouts", counted as killed),
    and `jobs` processes already fill the cores. One thread each."""
    return {**os.environ, **{name: "1" for name in THREAD_VARIABLES}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help="groups to run (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--scores", action="store_true", help="print the scores, run nothing")
    parser.add_argument("--survivors", action="store_true", help="list survivors, run nothing")
    args = parser.parse_args()
    by_name = {group.name: group for group in GROUPS}
    unknown = [name for name in args.groups if name not in by_name]
    if unknown:
        parser.error(f"unknown group {unknown[0]!r}; groups: {', '.join(by_name)}")
    chosen = [by_name[name] for name in args.groups] or list(GROUPS)
    if args.survivors:
        for group in chosen:
            print("\n".join(survivors(group)))
        return 0
    failures = 0
    if not args.scores:
        for group in chosen:
            failures += run(group, args.jobs, args.fresh) != 0
    print("\nmutation score per module: killed / (mutants - listed equivalent)")
    for group in chosen:
        print(score_line(group))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
