"""`swreg lookup`, `swreg list` and `swreg retract`.

The database and the service are imported inside the commands, so that `swreg lookup -h` loads
neither (nor SQLAlchemy and pydantic behind them).
"""

import json
import shlex
from typing import Any

import click

from registry.console import table
from registry.readers import api_option, reader
from registry.superweights.ablation import keeps_text, lineage_ratio_text, ratio_text


def _source(sw: dict[str, Any]) -> str:
    provenance = sw["provenance"]
    if provenance["sources"]:
        count = len(provenance["sources"])
        return f"{count} source" + ("s" if count > 1 else "")
    if provenance["detector_version"]:
        return f"swreg {provenance['detector_version']}"
    if provenance["citation"]:
        return "published index"
    return "-"


def _print_revision(rev: dict[str, Any]) -> None:
    layers = rev["num_layers"] and f"{rev['num_layers']} layers"
    details = ", ".join(str(x) for x in (rev["architecture"], rev["dtype"], layers) if x)
    click.echo(f"{rev['model_id']} @ {rev['revision']}" + (f"  ({details})" if details else ""))
    rows = [
        [
            sw["state"] + (" (disputed)" if sw["provenance"]["disputed_with"] else ""),
            str(sw["layer"]),
            sw["tensor"],
            json.dumps(sw["index"]),
            "-" if sw["value"] is None else f"{sw['value']:.6g}",
            sw["dtype"] or "-",
            ratio_text(sw) or "-",
            _source(sw),
        ]
        for sw in rev["super_weights"]
    ]
    # "zeroed": how many times zeroing the weight multiplied perplexity, and its interval.
    headers = ["state", "layer", "tensor", "index", "value", "dtype", "zeroed", "source"]
    if any(sw.get("expert") is not None for sw in rev["super_weights"]):
        # Mixture-of-experts revisions only: dense lookups print as they always did.
        headers.insert(2, "expert")
        for row, sw in zip(rows, rev["super_weights"], strict=True):
            row.insert(2, "-" if sw.get("expert") is None else str(sw["expert"]))
    if rows or not rev.get(
        "super_experts"
    ):  # a revision of claimed super experts only: no empty table
        for line in table(headers, rows):
            click.echo("  " + line)
    _print_super_experts(rev.get("super_experts") or [])
    _print_lineage_check(rev)
    citations = {sw["provenance"]["citation"] for sw in rev["super_weights"]} - {None}
    for citation in sorted(citations):
        click.echo(f"  citation: {citation}")
    for sw in rev["super_weights"]:
        _print_sources(sw)
    for sw in rev["super_weights"]:
        where = f"{sw['tensor']} {sw['index']}"
        if sw["provenance"]["reproduced_in"]:
            click.echo(f"  {where} reproduced at: {', '.join(sw['provenance']['reproduced_in'])}")
        if sw["state"] == "retracted":
            click.echo(f"  {where} retracted: {sw['provenance']['retraction_reason']}")


def _value(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _print_lineage_check(rev: dict[str, Any]) -> None:
    """The base the revision's card names and, when a job checked them, which of the base's
    verified super weights these weights keep."""
    base, check = rev.get("base_model"), rev.get("lineage_check")
    if not base:
        return
    if not check:
        click.echo(f"  fine-tune of {base} (not checked: no verified super weight of it then)")
        return
    click.echo(f"  fine-tune of {base} @ {check['base_revision']}: {keeps_text(check)}")
    rows = [
        [
            c["outcome"],
            str(c["layer"]),
            c["tensor"],
            json.dumps(c["index"]),
            _value(c.get("value")),
            _value(c.get("base_value")),
            lineage_ratio_text(c) or "-",
        ]
        for c in check["coordinates"]
    ]
    for line in table(["outcome", "layer", "tensor", "index", "value", "base", "zeroed"], rows):
        click.echo("    " + line)
    experts = check.get("super_experts")
    if experts:
        rows = [
            [
                e["outcome"],
                str(e["layer"]),
                str(e["expert"]),
                e["module"],
                lineage_ratio_text(e) or "-",
            ]
            for e in experts
        ]
        for line in table(["outcome", "layer", "expert", "module", "pruned"], rows):
            click.echo("    " + line)


def _print_lineage(lineage: dict[str, Any]) -> None:
    """The fine-tunes of the model the registry holds."""
    fine_tunes, total = lineage.get("fine_tunes") or [], lineage.get("fine_tunes_total", 0)
    if not fine_tunes:
        return
    shown = f", the first {len(fine_tunes)}" if len(fine_tunes) < total else ""
    click.echo("")
    click.echo(f"fine-tunes in the registry ({total}{shown}):")
    for fine_tune in fine_tunes:
        kept = ""
        if fine_tune.get("checked") is not None:
            kept = f": keeps {fine_tune['kept']} of {fine_tune['checked']}"
        click.echo(f"  {fine_tune['model_id']} @ {fine_tune['revision']}{kept}")


def _print_super_experts(found: list[dict[str, Any]]) -> None:
    """A revision's super experts: (layer, expert), state, largest |down-projection output|."""
    if not found:
        return
    click.echo("  super experts:")
    rows = [
        [
            se["state"] + (" (disputed)" if se["provenance"]["disputed_with"] else ""),
            str(se["layer"]),
            str(se["expert"]),
            se["module"],
            "-" if se["max_abs_output"] is None else str(se["max_abs_output"]),
            _source(se),
        ]
        for se in found
    ]
    for line in table(["state", "layer", "expert", "module", "max |output|", "source"], rows):
        click.echo("    " + line)
    for se in found:
        others = se["provenance"]["disputed_with"]
        if others:
            places = ", ".join(f"layer {p['layer']} expert {p['expert']}" for p in others)
            click.echo(
                f"  layer {se['layer']} expert {se['expert']}: disputed, other sources place it "
                f"at {places}"
            )


def _print_sources(sw: dict[str, Any]) -> None:
    """What each source says about a coordinate, and where else other sources place it."""
    provenance = sw["provenance"]
    if not provenance["sources"]:
        return
    line = f"  {sw['tensor']} {sw['index']}"
    if provenance["disputed_with"]:
        others = ", ".join(f"{p['tensor']} {p['index']}" for p in provenance["disputed_with"])
        line += f": disputed, other sources place it at {others}"
    click.echo(line)
    for source in provenance["sources"]:
        where = f", {source['locator']}" if source["locator"] else ""
        says = f": {source['statement']}" if source["statement"] else ""
        click.echo(f"    - {source['citation']}{where}{says}")


@click.command()
@click.argument("model")
@click.option("--revision", help="A full 40-hex commit sha, sha256:<hex> or unknown.")
@click.option("--json", "as_json", is_flag=True, help="Print the document the HTTP API returns.")
@api_option
def lookup(model: str, revision: str | None, as_json: bool, api_url: str | None) -> None:
    """Show the super weights recorded for MODEL (e.g. huggyllama/llama-7b).

    \b
    Examples:
      swreg lookup huggyllama/llama-7b
      swreg lookup allenai/OLMo-1B-0724-hf --revision unknown --json
      swreg lookup huggyllama/llama-7b --api http://127.0.0.1:8000   # or SWREG_API=...
    """
    document = reader(api_url).lookup(model, revision)
    if as_json:
        click.echo(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))
        return
    for i, rev in enumerate(document["revisions"]):
        if i:
            click.echo("")
        _print_revision(rev)
    _print_lineage(document.get("lineage") or {})


@click.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--after",
    metavar="MODEL_ID",
    help="Only models after this one (the `next` a page ends with).",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    help="Deprecated: models to skip (use --after, which stays fast deep in the list).",
)
@click.option("--search", metavar="TEXT", help="Only model ids containing TEXT (any case).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the page the HTTP API's model list returns."
)
@api_option
def list_models(
    limit: int,
    after: str | None,
    offset: int,
    search: str | None,
    as_json: bool,
    api_url: str | None,
) -> None:
    """List the models in the registry.

    Sorted by model id in binary (code point) order; a page ends with the `--after` of the next.

    \b
    Examples:
      swreg list
      swreg list --search llama --limit 5
      swreg list --limit 100 --after huggyllama/llama-7b   # the page after that model
      swreg list --json
      swreg list --api http://127.0.0.1:8000
    """
    if after is not None:
        from registry.superweights.service import check_model_cursor

        check_model_cursor(after)
    page = reader(api_url).models_page(limit=limit, offset=offset, after=after, search=search)
    if as_json:
        click.echo(json.dumps(page, indent=2, sort_keys=True, ensure_ascii=False))
        return
    total, items = page["total"], page["items"]
    rows = [
        [
            item["model_id"],
            str(len(item["revisions"])),
            str(item["super_weights"]),
            ", ".join(f"{n} {state}" for state, n in item["states"].items()) or "-",
        ]
        for item in items
    ]
    for line in table(["model", "revisions", "super weights", "states"], rows):
        click.echo(line)
    where = f" after {after}" if after is not None else f" from {offset}"
    shown = f" (showing {len(items)}{where})" if len(items) < total else ""
    click.echo(f"{total} models{shown}")
    if page["next"] is not None:
        more = f" --search {shlex.quote(search)}" if search else ""
        click.echo(f"next page: swreg list --limit {limit} --after {page['next']}{more}")


def _parse_index(ctx: click.Context, param: click.Parameter, text: str | None) -> list[int] | None:
    from registry.superweights import service

    if text is None:
        return None
    return service.parse_index(text.strip("[]"))  # also as lookup prints it: [3968, 7003]


def _parse_expert(
    ctx: click.Context, param: click.Parameter, text: str | None
) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.strip("()").replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise click.BadParameter(f"{text!r}: expected LAYER,EXPERT, e.g. 1,68")
    return int(parts[0]), int(parts[1])


@click.command()
@click.argument("model")
@click.option("--revision", required=True, help="The coordinate's revision (or unknown).")
@click.option("--tensor", help="e.g. model.layers.2.mlp.down_proj.weight")
@click.option("--index", callback=_parse_index, help="e.g. 3968,7003")
@click.option(
    "--super-expert",
    "super_expert",
    metavar="LAYER,EXPERT",
    callback=_parse_expert,
    help="A super expert instead of a coordinate, e.g. 1,68.",
)
@click.option("--reason", required=True, help="Why it is wrong (kept with it).")
def retract(
    model: str,
    revision: str,
    tensor: str | None,
    index: list[int] | None,
    super_expert: tuple[int, int] | None,
    reason: str,
) -> None:
    """Retract a coordinate or a super expert: it stays in the registry, marked retracted
    with the reason.

    \b
    Examples:
      swreg retract huggyllama/llama-7b --revision unknown \\
          --tensor model.layers.2.mlp.down_proj.weight --index 3968,7003 \\
          --reason "zeroing it does not move perplexity at any revision"
      swreg retract Qwen/Qwen3-30B-A3B --revision unknown --super-expert 1,68 \\
          --reason "pruning it does not move perplexity"
    """
    if (super_expert is None) == (tensor is None or index is None) or (tensor is None) != (
        index is None
    ):
        raise click.UsageError(
            "name a coordinate (--tensor and --index) or a super expert (--super-expert)"
        )
    from registry.database import transaction
    from registry.migrate import open_registry
    from registry.superweights import service

    with transaction(open_registry()) as session:
        if super_expert is not None:
            found = service.get_super_expert(session, model, revision, *super_expert)
            service.retract(session, found, reason)
        else:
            assert tensor is not None and index is not None  # checked above
            sw = service.get_coordinate(session, model, revision, tensor, index)
            service.retract(session, sw, reason)
    if super_expert is not None:
        click.echo(
            f"retracted {model} @ {revision} super expert {super_expert[1]} of layer "
            f"{super_expert[0]}"
        )
    else:
        click.echo(f"retracted {model} @ {revision} {tensor} {index}")
