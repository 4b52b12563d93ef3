"""Figures of what detection found, drawn with matplotlib (Agg, no display) from the contract's
types, so that the HTTP API (stored results) and `swreg detect --plot` (a fresh report) draw the
same pictures:

- the *profile* of a model revision: per layer, the largest |input| and |output| of the down
  projection on a log scale, one line per prompt, the super activations marked with their row,
  token and the weights that were verified there (the view of the paper's figures);
- the *ablation evidence* of one coordinate: perplexity of the baseline, the coordinate zeroed,
  zeroed with its super activation restored, and each control; and the stop-word probability of
  each, against the baseline's;
- the *quantization check* of a model revision: perplexity of each round-to-nearest setting
  (bits, block size, variant) against the full-precision baseline;
- the *experts* of a mixture-of-experts revision: a heat map of each routed expert's largest
  |down-projection output| per layer (log colour scale), experts no token reached in grey, the
  super experts outlined (the view of Su et al.'s Figure 5).

Figures are built on `matplotlib.figure.Figure` with the Agg canvas, never pyplot: no global
state, so the API can draw in any thread.
"""

import io
import math
import textwrap
from collections.abc import Iterable, Sequence
from typing import NamedTuple, cast

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from workers.contract.quantization import QuantizationCheck, QuantizedScore
from workers.contract.report import (
    ExpertProfile,
    LayerProfile,
    Report,
    Score,
    ValidationEvidence,
)

# Inches at DPI dots per inch: a 1000 x 420 pixel profile, 1000 x 340 per ablation panel.
DPI = 100
PROFILE_SIZE = (10.0, 4.2)
ABLATION_SIZE = (10.0, 3.4)
QUANTIZATION_SIZE = (10.0, 3.6)
EXPERTS_SIZE = (10.0, 4.6)
EXPERTS_COLORMAP = "viridis"
UNROUTED_COLOR = "#d5d8dc"  # experts no token reached: nothing measured
# Prompts are named in the legend by their first characters.
PROMPT_LABEL_CHARS = 38
FORMATS = ("png", "svg", "pdf")
# Spikes this close (in layers) get their labels stacked, this many points apart.
NEAR_LAYERS = 3
LABEL_STEP_POINTS = 34
# A verdict's reason is one line under the ablation panel's title.
REASON_CHARS = 150

FIRST_PROMPT_COLOR = "#1f4e79"
OTHER_PROMPT_COLOR = "#7f9fbf"
SPIKE_COLOR = "#c0392b"
THRESHOLD_COLOR = "#888888"
STATE_COLORS = {
    "verified": "#c0392b",
    "rejected": "#7f8c8d",
    "candidate": "#d68910",
    "published": "#1f618d",
    "retracted": "#5d6d7e",
}
VARIANT_COLORS = {"baseline": "#7f8c8d", "ablated": "#c0392b", "restored": "#2471a3"}
QUANTIZATION_COLORS = {"absmax": "#7f8c8d", "clip": "#c0392b", "clip_keep": "#2471a3"}
CONTROL_COLOR = "#d68910"


class Mark(NamedTuple):
    """A coordinate to name on the profile, at its layer."""

    layer: int
    row: int
    col: int
    state: str


# --- the profile --------------------------------------------------------------------------------


def _finite(values: Sequence[float | None]) -> list[float]:
    """Values a log axis can draw: non-finite and non-positive ones become gaps (NaN)."""
    return [v if v is not None and math.isfinite(v) and v > 0 else math.nan for v in values]


def _prompt_label(prompts: Sequence[str], i: int) -> str:
    text = prompts[i] if i < len(prompts) else ""
    short = text if len(text) <= PROMPT_LABEL_CHARS else text[: PROMPT_LABEL_CHARS - 1] + "…"
    return f"prompt {i + 1}: {short}" if short else f"prompt {i + 1}"


def _series(layers: Sequence[LayerProfile], field: str) -> list[list[float]]:
    """One list per prompt of a per-prompt field, layer by layer. Reports made before per-prompt
    entries existed have only the first prompt (and every prompt's max |output|)."""
    count = max((len(p.prompts) for p in layers), default=0)
    if count:
        return [
            _finite([getattr(p.prompts[i], field) if i < len(p.prompts) else None for p in layers])
            for i in range(count)
        ]
    if field == "max_abs_output":
        count = max((len(p.max_abs_output_per_prompt) for p in layers), default=1)
        return [
            _finite(
                [
                    p.max_abs_output_per_prompt[i] if i < len(p.max_abs_output_per_prompt) else None
                    for p in layers
                ]
            )
            for i in range(count)
        ]
    return [_finite([getattr(p, field) for p in layers])]


def draw_profile(
    figure: Figure | SubFigure,
    layers: Sequence[LayerProfile],
    *,
    prompts: Sequence[str] = (),
    marks: Sequence[Mark] = (),
    ratio: float | None = None,
    title: str = "",
) -> None:
    """Per layer, max |down_proj input| (left) and max |down_proj output| (right), log scale."""
    x = [p.layer for p in layers]
    axes_in, axes_out = figure.subplots(1, 2, sharex=True)
    panels = (
        (axes_in, "max_abs_input", "max |down_proj input|  (the MLP activation X)"),
        (axes_out, "max_abs_output", "max |down_proj output|  (the residual update Y)"),
    )
    for axes, field, label in panels:
        series = _series(layers, field)
        # The first prompt bold and on top; the others thin behind it.
        for i in range(len(series)):
            first = i == 0
            axes.plot(
                x,
                series[i],
                color=FIRST_PROMPT_COLOR if first else OTHER_PROMPT_COLOR,
                linewidth=1.8 if first else 0.9,
                alpha=1.0 if first else 0.7,
                marker="o" if first else None,
                markersize=3,
                label=_prompt_label(prompts, i),
                zorder=3 if first else 2,
            )
        axes.set_yscale("log")
        axes.set_title(label, fontsize=10)
        axes.set_xlabel("layer")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, which="major", alpha=0.3)
    _draw_threshold(axes_out, layers, ratio)
    _mark_spikes(axes_in, axes_out, layers, marks)
    handles, labels = axes_out.get_legend_handles_labels()
    if handles:
        figure.legend(
            handles, labels, loc="outside lower center", ncols=3, fontsize=7, frameon=False
        )
    if title:
        figure.suptitle(title, fontsize=11)


def _draw_threshold(axes, layers: Sequence[LayerProfile], ratio: float | None) -> None:
    """The level a layer's output must reach to count as a super activation (first prompt):
    `ratio` times the typical earlier layer's max |output|."""
    if not ratio:
        return
    x, level = [], []
    for p in layers:
        if p.spike_ratio and math.isfinite(p.spike_ratio) and p.spike_ratio > 0:
            x.append(p.layer)
            level.append(ratio * p.max_abs_output / p.spike_ratio)
    if x:
        axes.plot(
            x,
            level,
            linestyle="--",
            linewidth=1,
            color=THRESHOLD_COLOR,
            label=f"super activation threshold ({ratio:g}x typical)",
            zorder=1,
        )


def _annotate(axes, text: str, x: float, y: float, last_layer: int, level: int = 0) -> None:
    """A label beside a marked point, on the side of the plot that has room for it; `level`
    moves it down a step so that labels of neighbouring spikes do not overlap."""
    right = x <= last_layer / 2
    axes.annotate(
        text,
        (x, y),
        xytext=(8 if right else -8, -6 - LABEL_STEP_POINTS * level),
        textcoords="offset points",
        ha="left" if right else "right",
        va="top",
        fontsize=7,
        color=SPIKE_COLOR,
    )


def _mark_spikes(axes_in, axes_out, layers: Sequence[LayerProfile], marks: Sequence[Mark]) -> None:
    last_layer = max((p.layer for p in layers), default=0)
    by_layer: dict[int, list[Mark]] = {}
    for mark in marks:
        by_layer.setdefault(mark.layer, []).append(mark)
    level, previous = 0, None
    for p in layers:
        if not p.spike or not math.isfinite(p.max_abs_output) or p.max_abs_output <= 0:
            continue
        near = previous is not None and p.layer - previous <= NEAR_LAYERS
        level = level + 1 if near else 0
        previous = p.layer
        axes_out.scatter([p.layer], [p.max_abs_output], s=70, color=SPIKE_COLOR, zorder=4)
        lines = [f"layer {p.layer}: row {p.output_row}, token {p.output_token}"]
        if p.spike_ratio:
            lines.append(f"{p.max_abs_output:,.0f} ({p.spike_ratio:,.0f}x typical)")
        lines += [
            f"[{m.row}, {m.col}] {m.state}"
            for m in sorted(by_layer.get(p.layer, []), key=lambda m: (m.state != "verified", m.col))
            if m.state in ("verified", "candidate", "published")
        ]
        _annotate(axes_out, "\n".join(lines), p.layer, p.max_abs_output, last_layer, level)
        if math.isfinite(p.max_abs_input) and p.max_abs_input > 0:
            axes_in.scatter([p.layer], [p.max_abs_input], s=70, color=SPIKE_COLOR, zorder=4)
            _annotate(
                axes_in,
                f"layer {p.layer}: col {p.input_col}, token {p.input_token}",
                p.layer,
                p.max_abs_input,
                last_layer,
                level,
            )


# --- the ablation evidence ----------------------------------------------------------------------


def _variants(validation: ValidationEvidence) -> list[tuple[str, Score, str]]:
    """(label, score, colour) of the baseline, the variants and each control, in that order."""
    rows: list[tuple[str, Score, str]] = [
        ("baseline", validation.baseline, VARIANT_COLORS["baseline"]),
        ("zeroed", validation.ablated, VARIANT_COLORS["ablated"]),
    ]
    if validation.restored is not None:  # run only where zeroing the weight moved perplexity
        rows.append(
            ("zeroed,\nactivation\nrestored", validation.restored, VARIANT_COLORS["restored"])
        )
    for name, control in validation.controls.items():
        rows.append((f"control:\n{name.replace('_', '-')}", control, CONTROL_COLOR))
    return rows


def draw_ablation(
    figure: Figure | SubFigure, validation: ValidationEvidence, *, title: str = ""
) -> None:
    """Perplexity (log scale) and stop-word probability of each variant of one coordinate."""
    rows = _variants(validation)
    labels = [label for label, _, _ in rows]
    colors = [color for _, _, color in rows]
    axes_ppl, axes_stop = figure.subplots(1, 2)

    perplexities = [score.perplexity for _, score, _ in rows]
    finite = [v for v in perplexities if math.isfinite(v) and v > 0]
    top = max(finite, default=1.0) * 4  # room for the labels; where an infinite bar ends
    heights = [v if math.isfinite(v) and v > 0 else top for v in perplexities]
    bars = axes_ppl.bar(range(len(rows)), heights, color=colors)
    baseline = validation.baseline.perplexity
    for bar, value in zip(bars, perplexities, strict=True):
        if not math.isfinite(value):
            text = "inf"
        elif math.isfinite(baseline) and baseline > 0:
            text = f"{value:,.2f}\nx{value / baseline:.2f}"
        else:
            text = f"{value:,.2f}"
        axes_ppl.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    axes_ppl.set_yscale("log")
    axes_ppl.set_ylim(min(finite, default=1.0) / 3, top * 3)
    # Each run stops once its verdict cannot change; the title gives the zeroed run's predictions.
    axes_ppl.set_title(
        f"perplexity on {validation.ablated.tokens:,} predictions"
        f" (budget {validation.eval.tokens:,} tokens)",
        fontsize=10,
    )

    stop = [score.stop_word_probability for _, score, _ in rows]
    bars = axes_stop.bar(range(len(rows)), _finite(stop), color=colors)
    base_stop = validation.baseline.stop_word_probability
    axes_stop.axhline(base_stop, linestyle="--", linewidth=1, color=THRESHOLD_COLOR)
    for bar, value in zip(bars, stop, strict=True):
        shift = value - base_stop
        axes_stop.annotate(
            f"{value:.3f}\n{shift:+.3f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    axes_stop.set_ylim(0, max(_finite(stop) + [base_stop, 1e-3], key=_nan_low) * 1.35)
    axes_stop.set_title("stop-word probability (shift from the baseline)", fontsize=10)

    for axes in (axes_ppl, axes_stop):
        axes.set_xticks(range(len(rows)), labels, fontsize=7)
        axes.grid(True, axis="y", alpha=0.3)
    verdict = validation.verdict
    heading = f"{title}: {verdict.state}" if title else verdict.state
    figure.suptitle(f"{heading}\n{textwrap.shorten(verdict.reason, REASON_CHARS)}", fontsize=9)


# --- the quantization check ----------------------------------------------------------------------


def _block_label(block: int | None) -> str:
    return "row" if block is None else str(block)


def draw_quantization(
    figure: Figure | SubFigure, check: QuantizationCheck, *, title: str = ""
) -> None:
    """One panel per integer width: for each block size, the perplexity (log scale) of each
    variant, the full-precision baseline as a dashed line; a non-finite perplexity is a bar to
    the top labelled "inf"."""
    bits = sorted({r.bits for r in check.results}, reverse=True)
    variants = [v for v in QUANTIZATION_COLORS if any(r.variant == v for r in check.results)]
    finite = [
        r.perplexity for r in check.results if math.isfinite(r.perplexity) and r.perplexity > 0
    ]
    baseline = check.baseline.perplexity
    top = max(finite + [baseline], default=1.0) * 4  # room for the labels; where "inf" ends
    bottom = min(finite + [baseline], default=1.0) / 2
    width = 0.8 / max(len(variants), 1)
    panels = figure.subplots(1, len(bits), squeeze=False)[0]
    for axes, b in zip(panels, bits, strict=True):
        blocks = sorted(
            {r.block for r in check.results if r.bits == b}, key=lambda x: (x is None, x)
        )
        by_key: dict[tuple[int | None, str], QuantizedScore] = {
            (r.block, r.variant): r for r in check.results if r.bits == b
        }
        for v, variant in enumerate(variants):
            for x, block in enumerate(blocks):
                result = by_key.get((block, variant))
                if result is None:
                    continue
                value = result.perplexity
                height = value if math.isfinite(value) and value > 0 else top
                bar = axes.bar(
                    x + (v - (len(variants) - 1) / 2) * width,
                    height,
                    width,
                    color=QUANTIZATION_COLORS[variant],
                    label=variant if x == 0 else None,
                )[0]
                text = f"{value:,.0f}" if math.isfinite(value) else "inf"
                axes.annotate(
                    text,
                    (bar.get_x() + bar.get_width() / 2, height),
                    xytext=(0, 1),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
        axes.axhline(
            baseline,
            linestyle="--",
            linewidth=1,
            color=THRESHOLD_COLOR,
            label=f"full precision {baseline:,.2f}",
        )
        axes.set_yscale("log")
        axes.set_ylim(bottom, top * 3)
        axes.set_xticks(range(len(blocks)), [_block_label(x) for x in blocks], fontsize=8)
        axes.set_xlabel("block (input channels)", fontsize=8)
        axes.set_title(f"int{b}: perplexity", fontsize=10)
        axes.grid(True, axis="y", alpha=0.3)
    panels[0].legend(fontsize=7, loc="upper left")
    kept = ", ".join(coordinate_title(w.tensor, w.index) for w in check.kept) or "none"
    heading = f"{title}: " if title else ""
    figure.suptitle(
        textwrap.shorten(f"{heading}{check.clip_rule.description}; kept: {kept}", REASON_CHARS),
        fontsize=9,
    )


# --- the experts ---------------------------------------------------------------------------------


class ExpertMark(NamedTuple):
    """A super expert to outline on the heat map."""

    layer: int
    expert: int
    state: str


def expert_grid(profiles: Sequence[ExpertProfile]) -> tuple[list[int], np.ndarray]:
    """The layers drawn, and one row per layer of each expert's largest |output| (NaN where no
    token reached the expert or the layer has fewer experts; +inf kept)."""
    layers = sorted(p.layer for p in profiles)
    width = max((e.expert + 1 for p in profiles for e in p.experts), default=0)
    grid = np.full((len(layers), width), np.nan)
    row_of = {layer: i for i, layer in enumerate(layers)}
    for profile in profiles:
        for e in profile.experts:
            if e.tokens > 0:
                grid[row_of[profile.layer], e.expert] = e.max_abs_output
    return layers, grid


def draw_experts(
    figure: Figure | SubFigure,
    profiles: Sequence[ExpertProfile],
    *,
    marks: Sequence[ExpertMark] = (),
    title: str = "",
) -> None:
    """Layer by expert, each routed expert's largest |down_proj output| on a log colour scale;
    grey: no token routed to it; an infinite maximum drawn at the top of the scale."""
    layers, grid = expert_grid(profiles)
    axes = figure.subplots()
    finite = grid[np.isfinite(grid) & (grid > 0)]
    top = float(finite.max()) if finite.size else 1.0
    bottom = float(finite.min()) if finite.size else top / 10
    shown = np.where(np.isinf(grid), top, grid)
    shown = np.where(shown > 0, shown, np.nan)  # a log scale has no place for 0
    cmap = colormaps[EXPERTS_COLORMAP].with_extremes(bad=UNROUTED_COLOR)
    image = axes.imshow(
        np.ma.masked_invalid(shown),
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        norm=LogNorm(vmin=bottom, vmax=max(top, bottom * 1.0001)),
        origin="lower",
    )
    axes.set_yticks(range(len(layers)), [str(layer) for layer in layers], fontsize=7)
    if len(layers) > 24:  # keep the layer labels readable
        axes.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=24))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("expert  (grey: no token routed to it)")
    axes.set_ylabel("layer")
    colorbar = figure.colorbar(image, ax=axes, pad=0.01)
    colorbar.set_label("max |down_proj output|", fontsize=8)
    row_of = {layer: i for i, layer in enumerate(layers)}
    for mark in marks:
        if mark.layer not in row_of:
            continue
        y = row_of[mark.layer]
        color = STATE_COLORS.get(mark.state, SPIKE_COLOR)
        axes.add_patch(
            Rectangle((mark.expert - 0.5, y - 0.5), 1, 1, fill=False, linewidth=2, edgecolor=color)
        )
        axes.annotate(
            f"L{mark.layer} E{mark.expert} ({mark.state})",
            (mark.expert, y),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=7,
            color=color,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
        )
    if title:
        figure.suptitle(title, fontsize=11)


def _nan_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


# --- whole figures ------------------------------------------------------------------------------


def new_figure(size: tuple[float, float]) -> Figure:
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def profile_figure(
    layers: Sequence[LayerProfile],
    *,
    prompts: Sequence[str] = (),
    marks: Sequence[Mark] = (),
    ratio: float | None = None,
    title: str = "",
) -> Figure:
    figure = new_figure(PROFILE_SIZE)
    draw_profile(figure, layers, prompts=prompts, marks=marks, ratio=ratio, title=title)
    return figure


def ablation_figure(validation: ValidationEvidence, *, title: str = "") -> Figure:
    figure = new_figure(ABLATION_SIZE)
    draw_ablation(figure, validation, title=title)
    return figure


def quantization_figure(check: QuantizationCheck, *, title: str = "") -> Figure:
    figure = new_figure(QUANTIZATION_SIZE)
    draw_quantization(figure, check, title=title)
    return figure


def experts_figure(
    profiles: Sequence[ExpertProfile], *, marks: Sequence[ExpertMark] = (), title: str = ""
) -> Figure:
    figure = new_figure(EXPERTS_SIZE)
    draw_experts(figure, profiles, marks=marks, title=title)
    return figure


def coordinate_title(tensor: str, index: Sequence[int]) -> str:
    return f"{tensor} {list(index)}"


def report_figure(report: Report, *, title: str = "") -> Figure:
    """What `swreg detect --plot` writes: the profile, then the ablation evidence of every
    verified coordinate below it."""
    verified = [
        sw
        for sw in report.super_weights
        if sw.state == "verified" and sw.evidence.validation is not None
    ]
    heights = [PROFILE_SIZE[1]] + [ABLATION_SIZE[1]] * len(verified)
    figure = new_figure((PROFILE_SIZE[0], sum(heights)))
    panels: list[Figure | SubFigure] = (
        # one column of subfigures: an array of them (matplotlib's type says it may be one)
        list(cast(Iterable[SubFigure], figure.subfigures(len(heights), 1, height_ratios=heights)))
        if verified
        else [figure]
    )
    draw_profile(
        panels[0],
        report.profile,
        prompts=report.prompts,
        marks=[Mark(sw.layer, sw.row, sw.col, sw.state) for sw in report.super_weights],
        ratio=report.rules.get("super_activation_ratio"),
        title=title,
    )
    for panel, sw in zip(panels[1:], verified, strict=True):
        assert sw.evidence.validation is not None  # `verified` holds only validated weights
        draw_ablation(panel, sw.evidence.validation, title=coordinate_title(sw.tensor, sw.index))
    return figure


def render(figure: Figure, fmt: str = "png") -> bytes:
    """The figure's bytes. No creation date or software version is written, so the same
    figure gives the same bytes (its ETag is a hash of them)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}: expected one of {', '.join(FORMATS)}")
    metadata = {
        "png": {"Software": None},
        "svg": {"Date": None, "Creator": None},
        "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
    }[fmt]
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()
