"""`swreg quantize-check`: how much keeping the super weights in full precision helps
round-to-nearest weight quantization of one model, measured locally.

Which super weights are kept: the verified ones of this exact revision in the source named
(`--index FILE`, `--api URL`, or `--registry`: the local registry database); when no source is
named, or the source does not hold this revision, detection and validation run first (as
`swreg detect` would) and the weights they verify are kept. The output says which it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from workers.science.evaluation_defaults import DEFAULT_EVAL_TOKENS, eval_tokens_help

if TYPE_CHECKING:  # the command module stays light: `swreg --help` imports it
    from registry.superweights.schemas import ModelLookup, RevisionOut
    from swreg.client import Client
    from swreg.index import Index
    from workers.contract.progress import Progress
    from workers.contract.quantization import (
        KeptFrom,
        KeptWeight,
        QuantizationCheck,
        QuantizedScore,
    )
    from workers.science.checkpoint import Checkpoint
    from workers.science.pipeline.quantize import ToKeep

VARIANT_NAMES = ("absmax", "clip", "clip_keep")
# The stages of the detection that finds the weights to keep, as the progress names them.
FINDING_PREFIX = "find "
ROW = "row"
KEPT_FIELDS = {"tensor", "index", "layer", "module", "row", "col", "value", "expert"}


def _block(value: str) -> int | None:
    if value == ROW:
        return None
    try:
        size = int(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: a block is a number of input channels or 'row'"
        ) from None
    if size < 1:
        raise click.BadParameter(f"{value!r}: a block holds at least one weight")
    return size


@dataclass
class Target:
    """What MODEL names: a directory to read, with what is known of it before it is opened."""

    path: Path
    model_id: str | None  # the Hub id; None for a local directory (known by its content hash)
    revision: str | None  # the pinned Hub commit; None for a local directory
    file_sha256: dict[str, str] | None


def _target(model: str, revision: str | None) -> Target:
    from workers.sources.pinning import local_or_hub

    path = local_or_hub(model, revision)
    if path is not None:
        return Target(path, None, None, None)
    from registry.settings import get_settings
    from workers.sources.hub import fetch_hub
    from workers.sources.pinning import resolve_revision

    sha = resolve_revision(model, revision)
    fetched = fetch_hub(model, sha, max_bytes=get_settings().max_checkpoint_bytes)
    return Target(fetched.path, model, sha, fetched.weight_sha256)


class _RegistrySource:
    """The local registry database, answering like the API and an index file do."""

    def __init__(self) -> None:
        from registry.migrate import open_registry

        self.factory = open_registry()
        self.source = "the registry database"

    def lookup(self, model_id: str, revision: str | None = None) -> ModelLookup:
        from registry.database import transaction
        from registry.superweights import service
        from registry.superweights.schemas import ModelLookup

        with transaction(self.factory) as session:
            return ModelLookup.model_validate(service.lookup_document(session, model_id, revision))

    def at_revision(self, revision: str) -> list[RevisionOut]:
        from registry.database import transaction
        from registry.superweights import service
        from registry.superweights.schemas import RevisionMatches

        with transaction(self.factory) as session:
            document = service.revisions_at_document(session, revision)
        return RevisionMatches.model_validate(document).revisions


def _known(source, target: Target, revision: str) -> list[KeptWeight] | None:
    """The verified super weights `source` holds for this revision; None when it does not hold
    the revision. The same weights recorded under several model ids give their union."""
    from workers.contract.errors import NotFound
    from workers.contract.quantization import KeptWeight

    try:
        if target.model_id is None:
            entries = source.at_revision(revision)
        else:
            entries = source.lookup(target.model_id, revision).revisions
    except NotFound:
        return None
    if not entries:
        return None
    kept: dict[tuple[str, tuple[int, ...]], KeptWeight] = {}
    for entry in entries:
        for sw in entry.super_weights:
            if sw.state == "verified":
                kept[(sw.tensor, tuple(sw.index))] = KeptWeight(
                    **sw.model_dump(include=KEPT_FIELDS)
                )
    return [kept[key] for key in sorted(kept)]


def _detected(
    checkpoint: Checkpoint, device: str, eval_tokens: int, progress: Progress | None = None
) -> list[KeptWeight]:
    """The super weights detection and validation verify in this checkpoint (their stages
    reported to `progress` as `swreg detect` reports them)."""
    from workers.contract.quantization import KeptWeight
    from workers.science.pipeline.steps import AnalysisOptions
    from workers.science.pipeline.sweep import analyse

    click.echo("finding the super weights to keep: detection and validation", err=True)
    report = analyse(
        checkpoint.path,
        AnalysisOptions(
            device=device,
            eval_tokens=eval_tokens,
            file_sha256={f.name: f.sha256 for f in checkpoint.weight_files if f.sha256},
        ),
        progress,
    )
    return [
        KeptWeight(**sw.model_dump(include=KEPT_FIELDS))
        for sw in report.super_weights
        if sw.state == "verified"
    ]


# Perplexities from here on are printed in scientific notation: a broken model reaches 1e11.
SCIENTIFIC_FROM = 1e5


def _perplexity(value: float) -> str:
    return f"{value:.2f}" if value < SCIENTIFIC_FROM else f"{value:.3g}"


def _ratio(score: QuantizedScore) -> str:
    """The perplexity ratio to full precision and its interval: x1.02 (1.01-1.03)."""
    if score.interval is None:
        return f"x{_perplexity(score.ratio)}"
    low, high = score.interval.low, score.interval.high
    return f"x{_perplexity(score.ratio)} ({_perplexity(low)}-{_perplexity(high)})"


def format_check(check: QuantizationCheck, model: str, note: str | None = None) -> str:
    weights = (
        "every linear weight of the decoder layers"
        if check.weights == "all"
        else "the down projections"
    )
    kept = ", ".join(f"{k.tensor} {k.index}" for k in check.kept) or "none"
    base = check.baseline
    lines = [
        f"{model}: round-to-nearest of {check.matrices} weight matrices ({weights})",
        f"clipping: {check.clip_rule.description}",
        f"kept in full precision by clip_keep: {kept} (from {check.kept_from})",
        *([note] if note else []),
        (
            f"evaluation: {check.eval.path}, {check.eval.tokens} tokens; full precision: "
            f"perplexity {_perplexity(base.perplexity)}, "
            f"stop-word probability {base.stop_word_probability:.3f}"
        ),
        "",
    ]
    variants = [v for v in VARIANT_NAMES if any(r.variant == v for r in check.results)]
    lines.append(f"{'bits':<5} {'block':>5}" + "".join(f"  {v:>48}" for v in variants))
    lines.append(
        f"{'':<5} {'':>5}"
        + "".join(f"  {'ppl':>9} {'x full (CI)':>30} {'stop':>7}" for _ in variants)
    )
    rows: dict[tuple[int, int | None], dict[str, QuantizedScore]] = {}
    for result in check.results:
        rows.setdefault((result.bits, result.block), {})[result.variant] = result
    for (bits, block), by_variant in rows.items():
        cells = []
        for variant in variants:
            score = by_variant.get(variant)
            cells.append(
                f"  {_perplexity(score.perplexity):>9} {_ratio(score):>30} "
                f"{score.stop_word_probability:>7.3f}"
                if score
                else f"  {'':>9} {'':>30} {'':>7}"
            )
        lines.append(
            f"{'int' + str(bits):<5} {ROW if block is None else block:>5}" + "".join(cells)
        )
    return "\n".join(lines)


@click.command("quantize-check")
@click.argument("model")
@click.option("--revision", help="Hub branch, tag or commit (resolved to the full commit sha).")
@click.option(
    "--bits",
    "bits",
    multiple=True,
    type=click.IntRange(2, 8),
    help="Integer width (repeatable; default: 4 and 3).",
)
@click.option(
    "--block",
    "blocks",
    multiple=True,
    help="Input channels per block, or 'row' (repeatable; default: 64, 256, 1024, row).",
)
@click.option(
    "--variant",
    "variants",
    multiple=True,
    type=click.Choice(VARIANT_NAMES),
    help="absmax, clip, clip_keep (repeatable; default: all three).",
)
@click.option(
    "--weights",
    type=click.Choice(["all", "down_proj"]),
    default="all",
    show_default=True,
    help="Quantize every linear weight of the decoder layers, or only the down projections.",
)
@click.option(
    "--clip-rms-multiple",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Clip |w| at this many times each matrix's root mean square (the default rule, 10).",
)
@click.option(
    "--clip-quantile",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Clip |w| at this quantile of each matrix's |w| instead.",
)
@click.option(
    "--index",
    "index_file",
    type=click.Path(dir_okay=False),
    help="Keep the verified super weights this index file holds for the revision.",
)
@click.option(
    "--api",
    "api_url",
    help="Keep the verified super weights this swreg server holds for the revision.",
)
@click.option(
    "--registry",
    "use_registry",
    is_flag=True,
    help="Keep the verified super weights the local registry database holds for the revision.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--output-path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the results (the JSON document) to this file.",
)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option(
    "--eval-tokens",
    type=click.IntRange(min=2),
    default=None,
    help=eval_tokens_help("Tokens of the evaluation text to score, "),
)
def quantize_check(
    model,
    revision,
    bits,
    blocks,
    variants,
    weights,
    clip_rms_multiple,
    clip_quantile,
    index_file,
    api_url,
    use_registry,
    as_json,
    output_path,
    device,
    eval_tokens,
) -> None:
    """Perplexity of MODEL under round-to-nearest weight quantization, with and without its
    super weights kept in full precision.

    Quantizes MODEL's weights by round-to-nearest (int4, int3; blocks of 64 input channels up
    to whole rows) three ways -- plain absmax, outliers clipped, clipped with the super weights
    kept in full precision -- and compares perplexity and stop-word probability on the
    evaluation text with the full-precision model. Needs no database.

    \b
    Examples:
      swreg quantize-check ./my-checkpoint --bits 4 --block 64 --variant clip \\
          --variant clip_keep --registry
      swreg quantize-check ./my-checkpoint --bits 3 --block row --weights down_proj \\
          --clip-quantile 0.99999 --variant clip --variant clip_keep \\
          --api http://127.0.0.1:8000 --eval-tokens 256 --json --output-path results.json
    """
    from workers.sources.pinning import local_folder

    if output_path is not None and not output_path.parent.is_dir():
        # Said before minutes of work, not after.
        raise click.ClickException(f"cannot write {output_path}: no folder {output_path.parent}")
    # A missing folder or a file is refused before torch and transformers load (seconds); a Hub
    # name is checked when it is resolved below.
    local_folder(model)
    from registry.console import RunProgress, StageProgress
    from registry.settings import get_settings
    from workers.commands import run_history
    from workers.contract.progress import STAGES
    from workers.science.device import require_device
    from workers.science.pipeline.quantize import STAGE as QUANTIZE_STAGE
    from workers.science.pipeline.quantize import QuantizeOptions, ToKeep
    from workers.science.pipeline.quantize import quantize_check as run_check
    from workers.science.quantization import DEFAULT_BITS, DEFAULT_BLOCKS, ClipRule, Variant

    if sum(map(bool, (index_file, api_url, use_registry))) > 1:
        raise click.UsageError("name one source of super weights: --index, --api or --registry")
    if clip_rms_multiple is not None and clip_quantile is not None:
        raise click.UsageError("--clip-rms-multiple and --clip-quantile are two rules: pick one")
    require_device(device)
    if clip_quantile is not None:
        rule = ClipRule.at_quantile(clip_quantile)
    elif clip_rms_multiple is not None:
        rule = ClipRule.at_rms_multiple(clip_rms_multiple)
    else:
        rule = ClipRule()
    options = QuantizeOptions(
        device=device,
        eval_tokens=eval_tokens or DEFAULT_EVAL_TOKENS,
        bits=tuple(dict.fromkeys(bits)) or DEFAULT_BITS,
        blocks=tuple(dict.fromkeys(_block(b) for b in blocks)) or DEFAULT_BLOCKS,
        variants=tuple(Variant(v) for v in dict.fromkeys(variants)) or tuple(Variant),
        clip_rule=rule,
        weights=weights,
    )
    source: Index | Client | _RegistrySource | None = None
    kind: KeptFrom | None = None
    client: Client | None = None
    if index_file:
        from swreg.index import Index

        source, kind = Index.load(index_file), "index"
    elif api_url:
        from swreg.client import Client

        client = Client(api_url)
        source, kind = client, "api"
    elif use_registry:
        source, kind = _RegistrySource(), "registry"
    notes: list[str] = []
    try:
        target = _target(model, revision)
        options.file_sha256 = target.file_sha256

        def keep(checkpoint: Checkpoint) -> ToKeep:
            from workers.science.checkpoint import content_hash

            pinned = target.revision or content_hash(checkpoint)
            known = None if source is None else _known(source, target, pinned)
            if known is not None:
                assert kind is not None  # a source was named
                return ToKeep(known, kind)
            if source is not None:
                notes.append(f"note: {source.source} does not hold revision {pinned}")

            # The detection's own stages, named apart from the check's ("find detect 3/30").
            def finding(stage: str, done: int, total: int) -> None:
                progress(f"{FINDING_PREFIX}{stage}", done, total)

            return ToKeep(_detected(checkpoint, device, options.eval_tokens, finding), "detection")

        # Every stage as `swreg detect` shows it: bars on a terminal, plain lines otherwise
        # (the detection that finds the weights to keep included), and the whole run's time
        # left from earlier runs of the same settings (and source) on weights of a similar size.
        history = get_settings().run_history_file
        size = run_history.weight_bytes(target.path)
        history_kind = run_history.run_kind(
            "quantize-check",
            device=device,
            eval_tokens=options.eval_tokens,
            settings=",".join(s.name for s in options.settings()),
            weights=weights,
            kept_from=kind or "detection",
        )
        stages = ("load", *(f"{FINDING_PREFIX}{s}" for s in STAGES), QUANTIZE_STAGE)
        measured = run_history.measured_for(run_history.load(history), history_kind, size)
        with StageProgress() as display:
            progress = RunProgress(display, stages, measured)
            check = run_check(target.path, keep, options, progress)
        run_history.record(
            history, history_kind, size, progress.stage_seconds(), progress.elapsed()
        )
    finally:
        if client is not None:
            client.close()
    if output_path is not None:
        _write_results(output_path, check.dumps())
    if as_json:
        click.echo(check.dumps())
        return
    click.echo(format_check(check, model, notes[0] if notes else None))
    if output_path is not None:
        click.echo(f"results written to {output_path}")


def _write_results(path: Path, text: str) -> None:
    """The results file, written whole or not at all."""
    from registry.whole_file import write_whole

    try:
        write_whole(path, [text, "\n"])
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
