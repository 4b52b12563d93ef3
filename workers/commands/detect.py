"""`swreg detect`: find and validate the super weights of one model, locally, with no database."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from workers.science.evaluation_defaults import DEFAULT_EVAL_TOKENS, eval_tokens_help

if TYPE_CHECKING:  # the command module stays light: `swreg --help` imports it
    from workers.contract.report import Report

# Width of the bar that draws each layer's largest output on a log scale in the profile table.
BAR_WIDTH = 30


def _model_dir(model: str, revision: str | None) -> tuple[Path, dict[str, str] | None]:
    """A local directory as is, or a Hub repository fetched at its resolved commit."""
    from workers.sources.pinning import local_or_hub

    path = local_or_hub(model, revision)
    if path is not None:
        return path, None
    from registry.settings import get_settings
    from workers.sources.hub import fetch_hub
    from workers.sources.pinning import resolve_revision

    sha = resolve_revision(model, revision)
    fetched = fetch_hub(model, sha, max_bytes=get_settings().max_checkpoint_bytes)
    return fetched.path, fetched.weight_sha256


def _bar(value: float, largest: float) -> str:
    if value <= 0 or largest <= 1:
        return ""
    filled = round(BAR_WIDTH * math.log10(max(value, 1.0)) / math.log10(largest))
    return "#" * max(filled, 1)


def format_profile(report: Report) -> str:
    profile = report.profile
    largest = max((p.max_abs_output for p in profile), default=1.0)
    lines = [
        f"{'layer':>5} {'max|X|':>9} {'col':>6} {'max|Y|':>10} {'row':>6} {'tok':>4} "
        f"{'x typical':>9} {'x median':>9}  max|Y| (log scale)"
    ]
    for p in profile:
        ratio = "" if p.spike_ratio is None else f"{p.spike_ratio:.1f}"
        within = "" if p.within_layer_ratio is None else f"{p.within_layer_ratio:.1f}"
        mark = "  <- super activation" if p.spike else ""
        lines.append(
            f"{p.layer:>5} {p.max_abs_input:>9.1f} {p.input_col:>6} "
            f"{p.max_abs_output:>10.1f} {p.output_row:>6} {p.output_token:>4} "
            f"{ratio:>9} {within:>9}  {_bar(p.max_abs_output, largest)}{mark}"
        )
    return "\n".join(lines)


def _ppl(score) -> str:
    return "-" if score is None else f"{score.perplexity:.2f}"


def _interval(score) -> str:
    if score is None or score.interval is None:
        return "-"
    return f"{score.interval.low:.2f}-{score.interval.high:.2f}"


def format_candidates(report: Report) -> str:
    weights = report.super_weights
    if not weights:
        return "no super activation found: no candidates"
    # One column per control, in the order the report lists them.
    controls = next(
        (list(sw.evidence.validation.controls) for sw in weights if sw.evidence.validation), []
    )
    lines = [
        f"{'tensor':<45} {'index':<14} {'value':>9} {'share':>6} {'stable':>6} "
        f"{'ppl':>8} {'ablated':>9} {'ratio':>7} {'interval':>13} {'tokens':>6} {'restored':>9}"
        + "".join(f" {name.replace('_', '-'):>8}" for name in controls)
        + "  state"
    ]
    for sw in weights:
        det, val = sw.evidence.detection, sw.evidence.validation
        figures = [""] * (6 + len(controls))
        if val:
            figures = [
                f"{val.baseline.perplexity:.2f}",
                f"{val.ablated.perplexity:.2f}",
                f"x{val.ablated.ratio:.3f}",
                _interval(val.ablated),
                f"{val.ablated.tokens}",
                _ppl(val.restored),
                *(f"{val.controls[name].perplexity:.2f}" for name in controls),
            ]
        index = str(sw.index) if sw.expert is None else f"{sw.index} e{sw.expert}"
        lines.append(
            f"{sw.tensor:<45} {index:<14} {sw.value:>9.4f} "
            f"{det.mean_share:>6.2f} {det.stability:>6.2f} "
            f"{figures[0]:>8} {figures[1]:>9} {figures[2]:>7} {figures[3]:>13} {figures[4]:>6} "
            f"{figures[5]:>9}" + "".join(f" {f:>8}" for f in figures[6:]) + f"  {sw.state}"
        )
        if val:
            lines.append(f"{'':<45} {val.verdict.reason}")
        elif sw.evidence.selection and sw.evidence.selection.skipped:
            lines.append(f"{'':<45} {sw.evidence.selection.skipped}")
    experts = format_super_experts(report)
    if experts:
        lines.append(experts)
    run = report.validation
    if run is not None:
        lines.append(
            f"validation ({run.mode}): {run.variants} variants, {run.variant_tokens:,} "
            "variant-tokens "
            f"scored of {run.exhaustive_variant_tokens:,} on the whole budget, {run.rounds} "
            "sweep(s)"
        )
    return "\n".join(lines)


def format_super_experts(report: Report) -> str:
    """A mixture-of-experts revision's super experts: each spiking expert with its pruning
    against random experts of its layer ("" where there are none)."""
    if not report.super_experts:
        return ""
    lines = [
        "super experts:",
        f"  {'layer':>5} {'expert':>6} {'row':>5} {'max|Y|':>9} {'tokens':>6} {'pruned':>10} "
        f"{'interval':>17} {'random experts':<24} state",
    ]
    for se in report.super_experts:
        validation = se.evidence.get("validation")
        pruned, interval, controls = "", "", ""
        if validation:
            pruned = f"x{validation['pruned']['ratio']:.3f}"
            bounds = validation["pruned"].get("interval")
            interval = f"{bounds['low']:.2f}-{bounds['high']:.2f}" if bounds else "-"
            controls = ", ".join(
                f"{c['experts'][0]}: x{c['ratio']:.3f}" for c in validation["controls"].values()
            )
        lines.append(
            f"  {se.layer:>5} {se.expert:>6} {se.row if se.row is not None else '-':>5} "
            f"{se.max_abs_output:>9.1f} {se.tokens_routed:>6} {pruned:>10} {interval:>17} "
            f"{controls:<24} {se.state}"
        )
        if validation:
            lines.append(f"  {'':<5} {validation['verdict']['reason']}")
    return "\n".join(lines)


def _check_plot_path(path: Path) -> None:
    """Refuse a plot file we could not write before the analysis, not after it."""
    from registry.web.plots import FORMATS

    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise click.UsageError(
            f"--plot {path}: the file name must end in one of {', '.join('.' + f for f in FORMATS)}"
        )
    if not path.parent.resolve().is_dir():
        raise click.UsageError(f"--plot {path}: no such folder {path.parent}")


def _write_plot(report: Report, path: Path, model: str) -> None:
    from registry.web.plots import render, report_figure

    figure = report_figure(report, title=f"{model}: per-layer max |down_proj input| and |output|")
    path.write_bytes(render(figure, path.suffix.lstrip(".").lower()))
    click.echo(f"plot written to {path}", err=True)


@click.command()
@click.argument("model")
@click.option("--revision", help="Hub branch, tag or commit (resolved to the full commit sha).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--no-validate", is_flag=True, help="Detect only: no ablation runs.")
@click.option("--prompt", "prompts", multiple=True, help="A detection prompt (repeatable).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--eval-tokens",
    type=click.IntRange(min=2),
    default=None,
    help=eval_tokens_help(
        "Tokens of the evaluation text to score at most (all of it if shorter): exactly this "
        "many with --exhaustive, fewer when every verdict is clear earlier; "
    ),
)
@click.option(
    "--exhaustive",
    is_flag=True,
    help="Score every variant on all the evaluation tokens instead of stopping each as soon as "
    "its verdict cannot change (same verdicts, more time).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also draw the per-layer profile and each verified weight's ablation evidence into "
    "this file (.png, .svg or .pdf).",
)
def detect(
    model, revision, as_json, no_validate, prompts, device, eval_tokens, exhaustive, plot_path
) -> None:
    """Find the super weights of MODEL (a Hub id or a local directory) and prove them by
    ablation. Needs no database.

    Progress goes to stderr, one stage at a time (load, detect, validate, score): bars on a
    terminal, plain lines otherwise; and the whole run's time left (`all`), from this run's pace
    and what earlier runs on weights of a similar size took.

    \b
    Examples:
      swreg detect "$(swreg fetch-example)"
      swreg detect "$(swreg fetch-example)" --json --plot smollm2.png > smollm2.json
      swreg detect HuggingFaceTB/SmolLM2-135M-Instruct --revision main --no-validate
      swreg detect ./my-checkpoint --no-validate --prompt "Some text." --device cuda
    """
    from registry.console import RunProgress, StageProgress
    from registry.settings import get_settings
    from workers.commands import run_history
    from workers.contract.progress import LOAD_STEPS, STAGES

    if plot_path is not None:
        _check_plot_path(plot_path)
    # Shown before torch is imported: the load stage starts now, not seconds later.
    display = StageProgress()
    progress = RunProgress(display, STAGES, None)
    progress("load", 0, LOAD_STEPS)

    from workers.science.device import require_device

    require_device(device)
    # A wrong name or a missing folder is refused before torch and transformers load (seconds).
    path, known_sha256 = _model_dir(model, revision)
    from workers.science.pipeline.steps import AnalysisOptions
    from workers.science.pipeline.sweep import analyse

    options = AnalysisOptions(
        device=device,
        validate=not no_validate,
        prompts=list(prompts) or None,
        eval_tokens=eval_tokens or DEFAULT_EVAL_TOKENS,
        sequential=not exhaustive,
        file_sha256=known_sha256,
    )
    history = get_settings().run_history_file
    size = run_history.weight_bytes(path)
    kind = run_history.run_kind(
        "detect",
        device=device,
        validate=options.validate,
        prompts=len(prompts),
        eval_tokens=options.eval_tokens,
        sequential=options.sequential,
    )
    progress.measured = run_history.measured_for(run_history.load(history), kind, size)
    with display:
        report = analyse(path, options, progress)
    run_history.record(history, kind, size, progress.stage_seconds(), progress.elapsed())
    if plot_path is not None:
        _write_plot(report, plot_path, model)
    if as_json:
        click.echo(report.dumps())
        return
    info = report.model
    click.echo(
        f"{model}: {info.model_type}, {info.num_layers} layers, "
        f"{info.dtype}, d_model {info.d_model}, d_ff {info.d_ff}"
    )
    click.echo(format_profile(report))
    click.echo()
    click.echo(format_candidates(report))
