"""`swreg lookup`, `swreg list` and `swreg retract`."""

import json
from typing import Any

import click

from registry.database import transaction
from registry.migrate import open_registry
from registry.superweights import service


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*row).rstrip() for row in [headers, *rows]]


def _source(sw: dict[str, Any]) -> str:
    provenance = sw["provenance"]
    if provenance["sources"]:
        count = len(provenance["sources"])
        return f"{count} source" + ("s" if count > 1 else "")
    if provenance["citation"]:
        return "published index"
    if provenance["detector_version"]:
        return f"swreg {provenance['detector_version']}"
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
            _source(sw),
        ]
        for sw in rev["super_weights"]
    ]
    headers = ["state", "layer", "tensor", "index", "value", "dtype", "source"]
    for line in _table(headers, rows):
        click.echo("  " + line)
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
def lookup(model: str, revision: str | None, as_json: bool) -> None:
    """Show the super weights recorded for MODEL (e.g. huggyllama/llama-7b)."""
    with transaction(open_registry()) as session:
        document = service.lookup_document(session, model, revision)
    if as_json:
        click.echo(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False))
        return
    for i, rev in enumerate(document["revisions"]):
        if i:
            click.echo("")
        _print_revision(rev)


@click.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
def list_models(limit: int, offset: int) -> None:
    """List the models in the registry."""
    with transaction(open_registry()) as session:
        total, items = service.list_models(session, limit=limit, offset=offset)
    rows = [
        [
            item["model_id"],
            str(len(item["revisions"])),
            str(item["super_weights"]),
            ", ".join(f"{n} {state}" for state, n in item["states"].items()) or "-",
        ]
        for item in items
    ]
    for line in _table(["model", "revisions", "super weights", "states"], rows):
        click.echo(line)
    shown = f" (showing {len(items)} from {offset})" if len(items) < total else ""
    click.echo(f"{total} models{shown}")


def _parse_index(text: str) -> list[int]:
    try:
        return [int(part) for part in text.strip("[]").split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected e.g. 3968,7003") from None


@click.command()
@click.argument("model")
@click.option("--revision", required=True, help="The coordinate's revision (or unknown).")
@click.option("--tensor", required=True, help="e.g. model.layers.2.mlp.down_proj.weight")
@click.option("--index", "index_text", required=True, help="e.g. 3968,7003")
@click.option("--reason", required=True, help="Why the coordinate is wrong (kept with it).")
def retract(model: str, revision: str, tensor: str, index_text: str, reason: str) -> None:
    """Retract a coordinate: it stays in the registry, marked retracted with the reason."""
    index = _parse_index(index_text)
    with transaction(open_registry()) as session:
        sw = service.get_coordinate(session, model, revision, tensor, index)
        service.retract(session, sw, reason)
    click.echo(f"retracted {model} @ {revision} {tensor} {index}")
