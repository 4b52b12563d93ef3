"""What the command line shows a person: tables, and progress while they wait (`swreg detect`,
`swreg submit --wait`).

Every table starts with a header row naming its columns (`table`).

Progress: both commands hear `progress(stage, done, total)`: `done` out of `total` units of a
named stage's work. On a terminal each stage gets a progress bar of its own (tqdm, on stderr),
created when the stage
is first reported, so that stages that run side by side (the streamed sweep detects and
validates each layer as it goes by) each show their own count. When stderr is not a terminal
(a log file, CI, a pipe) bars would be noise: a stage is reported in plain lines instead, at its
first unit of work done, at most every LOG_INTERVAL_SECONDS while it runs (with the seconds left
at the pace measured so far, as a bar shows its ETA), and when it is done, with the seconds it
took since it was first reported. A stage may run again after it was done
and another stage has run (validation goes in rounds: a round validates, then scores, and the
sequential evaluation or a restore may need another round): each round is a new pass of the
stage, labelled as such (`validate pass 2`), with a bar or lines of its own, so that neither a
bar nor a log ever seems to go backwards and the log shows the stages in the order they ran.

Over the stages, one overall line: the whole run's time left (`overall`, from
`registry.time_left`), an `all` bar of the time so far over the time so far plus the time left on
a terminal, a plain line at most every LOG_INTERVAL_SECONDS otherwise. `RunProgress` computes it
for a local run from its own stages' counts and what earlier runs took.
"""

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self, TextIO

if TYPE_CHECKING:
    from registry.time_left import Estimate, Measured

# How often a plain-line report repeats while a stage runs: often enough to show it is alive,
# rarely enough that a log of a long job stays readable.
LOG_INTERVAL_SECONDS = 5.0
# Stage names are padded to this width so that bars and lines align.
STAGE_WIDTH = 8
# The label of the overall bar or line (the whole run's time left).
OVERALL = "all"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Lines of a left-aligned table, its header row first, columns two spaces apart."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*row).rstrip() for row in [headers, *rows]]


class StageProgress:
    """A `progress(stage, done, total)` callable that draws what it hears (see the module doc).

    `one_bar`: a single bar that each new stage takes over, for a follower that only sees the
    current stage (a job document) rather than every stage's own count.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        bars: bool | None = None,
        one_bar: bool = False,
        prefix: str = "",
    ):
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self.one_bar = one_bar
        self.prefix = prefix
        self._bars: dict[str, Any] = {}  # tqdm bars (tqdm is imported only to draw)
        self._started: dict[str, float] = {}
        self._logged: dict[str, tuple[float, int, int]] = {}
        # Each stage's last count, its pass (1, 2, ...), and the number of stage changes seen
        # when it was last reported: a stage done whose last report is older than the latest
        # change has been followed by another stage, and its next report starts a new pass.
        self._counts: dict[str, tuple[int, int]] = {}
        self._pass: dict[str, int] = {}
        self._changes = 0
        self._change_of: dict[str, int] = {}
        self._current: str | None = None
        self._current_label: str | None = None
        self._overall_bar: Any = None
        self._overall_logged: float | None = None

    # --- the callable -------------------------------------------------------------------------

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._current:
            self._changes += 1
        last = self._counts.get(stage)
        if last is not None and last[0] >= last[1] and self._change_of[stage] < self._changes:
            # Done, and another stage has run since: this is the stage's next pass.
            self._pass[stage] = self._pass.get(stage, 1) + 1
            self._started[stage] = now
            self._logged.pop(stage, None)
        self._started.setdefault(stage, now)
        self._counts[stage] = (done, total)
        self._change_of[stage] = self._changes
        label = self._label(stage)
        if self.bars:
            self._draw(stage, label, done, total)
        else:
            self._log(stage, label, done, total, now)
        self._current, self._current_label = stage, label

    def counts(self) -> dict[str, tuple[int, int]]:
        """(done, total) of every stage reported so far, in its current pass."""
        return dict(self._counts)

    def elapsed_in(self, stage: str, now: float | None = None) -> float:
        """Seconds since the stage's current pass was first reported."""
        started = self._started.get(stage)
        return 0.0 if started is None else (now or time.monotonic()) - started

    def overall(self, estimate: "Estimate | None") -> None:
        """Show the whole run's time left (see the module doc); None: nothing measured yet."""
        if estimate is None:
            return
        ran, left = estimate.elapsed, estimate.seconds
        # A stage-only estimate is not the run's: said as what it is, never as the whole.
        said = f"~{left:.0f} s left" if estimate.scope == "job" else _stage_only(estimate)
        if self.bars:
            from tqdm import tqdm

            if self._overall_bar is None:
                self._overall_bar = tqdm(
                    desc=f"{self.prefix}{OVERALL:<{STAGE_WIDTH}}",
                    total=100,
                    file=self.stream,
                    position=len(self._bars),
                    leave=True,
                    dynamic_ncols=True,
                    bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}",
                )
                self._bars[OVERALL] = self._overall_bar
            share = 100 * ran / (ran + left) if ran + left > 0 else 100
            self._overall_bar.n = round(share)
            self._overall_bar.set_postfix_str(said, refresh=True)
            return
        now = time.monotonic()
        if self._overall_logged is not None and now - self._overall_logged < LOG_INTERVAL_SECONDS:
            return
        self._overall_logged = now
        line = f"{self.prefix}{OVERALL:<{STAGE_WIDTH}} {said}"
        print(line, file=self.stream, flush=True)

    def passes(self, stage: str) -> int:
        """How many passes of the stage have started so far."""
        return self._pass.get(stage, 1) if stage in self._counts else 0

    def _draw(self, stage: str, label: str, done: int, total: int) -> None:
        from tqdm import tqdm  # only drawn on a terminal

        key = "" if self.one_bar else f"{stage}#{self._pass.get(stage, 1)}"
        bar = self._bars.get(key)
        if bar is None:
            bar = self._bars[key] = tqdm(
                desc=label,
                total=total,
                file=self.stream,
                position=len(self._bars),
                leave=True,
                dynamic_ncols=True,
            )
        if self.one_bar and label != self._current_label:
            bar.set_description_str(label, refresh=False)
            bar.reset(total=total)
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def _log(self, stage: str, label: str, done: int, total: int, now: float) -> None:
        last = self._logged.get(stage)
        if last is None and done == 0 and total > 0:
            # Nothing done yet: the first line waits for the first unit of work, so that a run
            # refused at its start (a bad checkpoint) says so in its one error line alone.
            return
        if last is not None:
            last_time, last_done, last_total = last
            if (done, total) == (last_done, last_total):
                return
            finished = done >= total
            if not finished and now - last_time < LOG_INTERVAL_SECONDS:
                return
        line = f"{label} {done}/{total}"
        elapsed = now - self._started[stage]
        if done >= total:
            line += f" ({elapsed:.1f} s)"
        elif done > 0 and elapsed > 0:
            # What is left of this pass at the pace measured so far in it.
            line += f" (~{(total - done) * elapsed / done:.0f} s left)"
        print(line, file=self.stream, flush=True)
        self._logged[stage] = (now, done, total)

    def _label(self, stage: str) -> str:
        n = self._pass.get(stage, 1)
        name = stage if n == 1 else f"{stage} pass {n}"
        return f"{self.prefix}{name:<{STAGE_WIDTH}}"

    def note(self, text: str) -> None:
        """A line of its own, above the bars on a terminal."""
        if self._bars:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        self._overall_bar = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _stage_only(estimate: "Estimate") -> str:
    """An estimate of the current stage alone, in words (`registry.time_left`: no earlier run)."""
    return (
        f"? (no earlier run to measure on; {estimate.stage} ~{estimate.seconds:.0f} s left at "
        "its pace)"
    )


class RunProgress:
    """A `progress(stage, done, total)` callable for a local run: it draws each stage on a
    `StageProgress` and, after each report, the whole run's time left, from this run's counts
    and `measured` (what earlier runs took; None: the current stage's pace only). It also times
    each stage's first pass (first report to done), what `stage_seconds` gives the next runs."""

    def __init__(self, display: StageProgress, stages: Sequence[str], measured: "Measured | None"):
        self.display = display
        self.stages = tuple(stages)
        self.measured = measured
        self.started = time.monotonic()
        self._first: dict[str, float] = {}
        self._done: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from registry.time_left import time_left

        now = time.monotonic()
        self._first.setdefault(stage, now)
        if done >= total and stage not in self._done:
            self._done[stage] = now - self._first[stage]
        self.display(stage, done, total)
        self.display.overall(
            time_left(
                self.stages,
                stage,
                self.display.counts(),
                self.display.elapsed_in(stage, now),
                now - self.started,
                self.measured,
                finished=self._done,
            )
        )

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def stage_seconds(self) -> dict[str, float]:
        """Each stage's first pass, in seconds (stages never finished are left out)."""
        return {stage: round(seconds, 3) for stage, seconds in self._done.items()}
