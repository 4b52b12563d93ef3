"""Which candidates of a layer are ablated, in what order, and which together.

Detection can name many weights in a spiking layer: a huge input channel lifts every row it feeds,
and each of those rows is then explained by the same column (a 1.5B model gave 45 candidates in
3 layers, all rejected). Validation costs one ablation variant per *unit*, so:

- **Shadows are one unit.** Candidates of one layer that share their input channel (the same
  column, different rows) are the shadows of one spike: they are zeroed together in one variant.
  If zeroing them all does not move the model, none of them does alone; if it does, each is then
  ablated on its own to say which (`workers.science.validation.judge`).
- **Strongest first.** Units are ranked by the share of the layer's spike they carry.
- **Bounded.** At most `MAX_ABLATIONS_PER_LAYER` units per layer are ablated; the rest stay
  `candidate`, and their evidence says they were skipped and why.
"""

from dataclasses import dataclass

from workers.science.detection import Candidate

# Ablation units per layer. Every super weight published so far shares its layer with at most
# one other input channel (Llama-13B, Llama-30B: two columns of one row; Llama-3-8B and
# Phi-3-mini: several rows of one column, which is one unit here), so 4 leaves a factor of two.
MAX_ABLATIONS_PER_LAYER = 4


def spike_share(candidate: Candidate, peaks: dict[int, float]) -> float:
    """The largest share of its layer's spike this weight carries on any prompt: its
    contribution W[row, col] * X[t, col], in the spike's direction, over the largest |output|
    among the layer's spiking rows on that prompt (`peaks`, by prompt)."""
    shares = [
        o.share * abs(o.output) / peaks[o.prompt]
        for o in candidate.observations
        if peaks[o.prompt] > 0
    ]
    return max(shares, default=0.0)


def layer_peaks(candidates: list[Candidate]) -> dict[int, float]:
    """Per prompt, the largest |output| among the spiking rows these candidates explain."""
    peaks: dict[int, float] = {}
    for candidate in candidates:
        for o in candidate.observations:
            peaks[o.prompt] = max(peaks.get(o.prompt, 0.0), abs(o.output))
    return peaks


@dataclass
class Unit:
    """What one ablation variant zeroes: one candidate, or the shadow rows of one input channel."""

    layer: int
    col: int
    members: list[Candidate]  # strongest first
    spike_share: float
    rank: int  # 1 = strongest unit of its layer
    expert: int | None = None  # the routed expert whose matrix it is in (None: dense)

    @property
    def is_group(self) -> bool:
        return len(self.members) > 1

    @property
    def coordinates(self) -> list[tuple[int, int]]:
        return [(c.row, c.col) for c in self.members]


@dataclass
class Selection:
    """The units of one layer: those ablated (strongest first) and those skipped."""

    ablated: list[Unit]
    skipped: list[Unit]
    shares: dict[
        tuple[int, ...], float
    ]  # candidate key (layer, row, col[, expert]) -> its spike share

    @property
    def ranked(self) -> int:
        return len(self.ablated) + len(self.skipped)


def select(candidates: list[Candidate], limit: int = MAX_ABLATIONS_PER_LAYER) -> Selection:
    """Group one layer's candidates by input channel, rank the groups, keep the first `limit`."""
    if not candidates:
        return Selection([], [], {})
    peaks = layer_peaks(candidates)
    shares = {c.key: spike_share(c, peaks) for c in candidates}
    by_col: dict[int, list[Candidate]] = {}
    for candidate in candidates:
        by_col.setdefault(candidate.col, []).append(candidate)
    units = []
    for col, members in by_col.items():
        members.sort(key=lambda c: (-shares[c.key], c.row))
        units.append(
            Unit(members[0].layer, col, members, shares[members[0].key], 0, members[0].expert)
        )
    # Ties (equal shares) broken by column so that the order never depends on dict order.
    units.sort(key=lambda u: (-u.spike_share, u.col))
    for rank, unit in enumerate(units, start=1):
        unit.rank = rank
    return Selection(units[:limit], units[limit:], shares)
