"""The `swreg` command line.

Each domain keeps its own commands next to its code; this module only gathers them and turns
every `SwregError` into one line on stderr with a non-zero exit code (never a traceback).
"""

import sys

import click

from registry import __version__
from registry.errors import SwregError


class SwregGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SwregError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=SwregGroup)
@click.version_option(__version__, prog_name="swreg")
def main() -> None:
    """swreg: find, prove, store and serve the super weights of language models."""


def _register_commands() -> None:
    # Imported here so that `swreg --help` stays cheap: torch is only imported by the commands
    # that run a model, inside their own bodies.
    from workers.bench import bench
    from workers.detect_command import detect

    main.add_command(detect)
    main.add_command(bench)

    from registry.db_cli import db, setup
    from registry.index.cli import export, import_
    from registry.server import serve
    from registry.superweights.cli import list_models, lookup, retract

    for command in (db, setup, lookup, list_models, retract, export, import_, serve):
        main.add_command(command)

    from registry.auth.cli import token
    from registry.jobs.cli import jobs, submit, worker

    for command in (submit, jobs, worker, token):
        main.add_command(command)


_register_commands()


if __name__ == "__main__":
    main()
