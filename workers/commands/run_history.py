"""What earlier local runs of `swreg detect` and `swreg quantize-check` took, so that a run can
say how long it has left before it has measured its own later stages (`registry.time_left`).

Kept in a small JSON file (`SWREG_RUN_HISTORY_FILE`, by default `runs.json` in the user cache
folder): the last HISTORY_RUNS runs, each with its kind (the command and the options that change
how much work it does: `run_kind`), its weights' bytes, and the seconds of each stage's first pass
and of the whole run (imports included: what the person waits for). A run is estimated from the
earlier runs of its kind on weights of a similar size only, their times scaled by the ratio of
the sizes: the work grows with the bytes read and multiplied, but a run on a model many times
smaller says nothing of a larger one (its fixed costs, importing torch, dominate).

The file is a convenience: one that cannot be read or written is ignored (the run goes on
without an estimate of its later stages), and it is replaced whole, never half-written.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from statistics import median

from registry.time_left import TOTAL, Measured
from registry.whole_file import write_whole

log = logging.getLogger(__name__)

# How many runs the file keeps (the newest): enough for a stable median, small enough to read at
# every start.
HISTORY_RUNS = 20
# Runs on weights within this factor of a run's own size measure it.
SIMILAR_SIZE = 2.0
# A file larger than this is not ours to parse (HISTORY_RUNS entries are a few KB).
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Run:
    kind: str
    weight_bytes: int
    seconds: dict[str, float]


def run_kind(command: str, **options: object) -> str:
    """The kind of a run: its command and the options that change its work, in one line
    (`detect eval_tokens=1024 validate=True`); runs measure each other only within a kind."""
    return " ".join([command, *(f"{k}={options[k]}" for k in sorted(options))])


def weight_bytes(folder: Path) -> int:
    """The bytes of a checkpoint folder's safetensors files (what the analysis reads)."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors") if f.is_file())


def _parse(entry: object) -> Run | None:
    if not isinstance(entry, dict):
        return None
    kind, size, seconds = entry.get("kind"), entry.get("weight_bytes"), entry.get("seconds")
    if not isinstance(kind, str) or not isinstance(size, int) or size <= 0:
        return None
    if not isinstance(seconds, dict):
        return None
    clean = {
        str(k): float(v)
        for k, v in seconds.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    }
    return Run(kind, size, clean) if clean else None


def load(path: Path) -> list[Run]:
    """The runs the file holds, oldest first; none when it is missing or not ours."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return []
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(entries, list):
        return []
    return [run for run in map(_parse, entries) if run is not None]


def _similar(a: int, b: int) -> bool:
    return 1 / SIMILAR_SIZE <= a / b <= SIMILAR_SIZE


def measured_for(runs: list[Run], kind: str, size: int) -> Measured | None:
    """Each stage's median seconds over the runs of `kind` on weights of a similar size, scaled
    to `size`; None when there is none."""
    similar = [r for r in runs if r.kind == kind and size > 0 and _similar(r.weight_bytes, size)]
    if not similar:
        return None
    found: dict[str, list[float]] = {}
    for run in similar:
        scale = size / run.weight_bytes
        for stage, seconds in run.seconds.items():
            found.setdefault(stage, []).append(seconds * scale)
    plural = "s" if len(similar) != 1 else ""
    return Measured(
        {stage: median(values) for stage, values in found.items()},
        len(similar),
        f"last {{n}} local run{plural} on weights of a similar size",
    )


def record(path: Path, kind: str, size: int, stage_seconds: dict[str, float], total: float) -> None:
    """Add a finished run (and forget the oldest beyond HISTORY_RUNS); never fails the run."""
    runs = load(path)[-(HISTORY_RUNS - 1) :]
    runs.append(Run(kind, size, {**stage_seconds, TOTAL: round(total, 3)}))
    entries = [{"kind": r.kind, "weight_bytes": r.weight_bytes, "seconds": r.seconds} for r in runs]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, [json.dumps(entries)])
    except OSError as exc:
        log.debug("run history not written to %s: %s", path, exc)
