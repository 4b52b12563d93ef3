"""`swreg export` and `swreg import`.

The database and the index service are imported inside the commands, so that `swreg export -h`
loads neither.
"""

from contextlib import closing
from pathlib import Path

import click

from registry.readers import api_option, reader
from registry.whole_file import write_whole


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
@click.option(
    "--since",
    metavar="CURSOR",
    help="Only the revisions added, updated or retracted after this data version (or the "
    "`next` of a changes page); the version to use next time is printed on stderr.",
)
@api_option
def export(
    output: Path | None, generated_at: str | None, since: str | None, api_url: str | None
) -> None:
    """Write the whole registry as one JSON index document.

    \b
    Examples:
      swreg export -o index.json
      swreg export --generated-at 2026-01-01T00:00:00Z > index.json   # reproducible bytes
      swreg export --since 1234 -o changes.json   # what changed after data version 1234
      swreg export --api http://127.0.0.1:8000 -o index.json          # a server's index
    """
    from registry.clock import parse_time

    pinned = parse_time(generated_at) if generated_at else None
    if api_url is not None:
        if since is not None:
            raise click.UsageError(
                "--since reads the local registry's changes; a server's are at "
                "GET /api/v1/changes?since=V (swreg.Client.iter_changes)"
            )
        text = reader(api_url).index_text(pinned)
        if output is None:
            click.echo(text, nl=False)
        else:
            write_whole(output, [text])
            click.echo(f"wrote {output}", err=True)
        return
    from registry.changes.service import Cursor, changed_since
    from registry.index.stream import Snapshot
    from registry.migrate import open_registry

    where = None if since is None else changed_since(Cursor.parse(since))
    # Streamed from one snapshot: memory stays one batch of revisions whatever the registry's
    # size, and writers meanwhile change nothing in it.
    snapshot = Snapshot.open(open_registry().kw["bind"])
    with closing(snapshot):
        chunks = snapshot.chunks(generated_at=pinned, where=where)
        if output is None:
            for chunk in chunks:
                click.echo(chunk, nl=False)
        else:
            write_whole(output, chunks)
            click.echo(f"wrote {output}", err=True)
    if since is not None:
        # The snapshot's data version: every change up to it is in the document.
        click.echo(f"next: swreg export --since {snapshot.version}", err=True)


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def import_(file: Path) -> None:
    """Load a JSON index (validated as it is read; all or nothing; importing twice = once).

    The published index needs no file: `swreg setup` loads it, from any folder.

    \b
    Examples:
      swreg import index.json
      swreg import changes.json   # what changed after a data version: swreg export --since V
    """
    from registry.database import transaction
    from registry.index.bulk import import_file
    from registry.migrate import open_registry

    # Read a model at a time and written in batches, in one transaction.
    with transaction(open_registry()) as session:
        stats = import_file(session, file)
    click.echo(f"imported {file}: {stats.summary()}")
