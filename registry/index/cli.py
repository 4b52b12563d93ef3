"""`swreg export` and `swreg import`.

The database and the index service are imported inside the commands, so that `swreg export -h`
loads neither.
"""

from pathlib import Path

import click

from registry.readers import api_option, reader


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
@click.option(
    "--generated-at",
    metavar="ISO",
    help="Pin meta.generated_at (e.g. 2026-01-01T00:00:00Z) for reproducible bytes.",
)
@api_option
def export(output: Path | None, generated_at: str | None, api_url: str | None) -> None:
    """Write the whole registry as one JSON index document.

    \b
    Examples:
      swreg export -o index.json
      swreg export --generated-at 2026-01-01T00:00:00Z > index.json   # reproducible bytes
      swreg export --api http://127.0.0.1:8000 -o index.json          # a server's index
    """
    from registry.clock import parse_time

    pinned = parse_time(generated_at) if generated_at else None
    text = reader(api_url).index_text(pinned)
    if output is None:
        click.echo(text, nl=False)
        return
    # Write beside the target and rename, so a failure never leaves half a file.
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(output)
    click.echo(f"wrote {output}", err=True)


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Load a JSON index (validated first; all or nothing; importing twice = once).

    The published index needs no file: `swreg setup` loads it, from any folder.

    \b
    Examples:
      swreg import index.json
      SWREG_DATABASE_URL=sqlite:////tmp/copy.db swreg import index.json   # into another database
    """
    from registry.database import transaction
    from registry.index import service
    from registry.migrate import open_registry

    document = service.load_file(file)
    with transaction(open_registry()) as session:
        stats = service.import_document(session, document)
    click.echo(f"imported {file}: {stats.summary()}")
