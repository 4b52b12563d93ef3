"""The `swreg` command line.

Each command lives next to the code it drives (the registry's domains, the worker, the science's
commands); this module only names them, imports one when it is used, and turns every
`SwregError` into one line on stderr with a non-zero exit code (never a traceback). Command
modules import their heavy dependencies (torch, transformers, huggingface_hub) inside the command
body, so `swreg --help` and the registry's commands start without them.
"""

import importlib
import sys

import click

from registry import __version__
from registry.errors import SwregError

# name -> "module:attribute" of the click command.
COMMANDS = {
    "bench": "workers.commands.bench:bench",
    "bench-api": "registry.bench_api:bench_api",
    "db": "registry.db_cli:db",
    "detect": "workers.commands.detect:detect",
    "export": "registry.index.cli:export",
    "import": "registry.index.cli:import_",
    "jobs": "registry.jobs.cli:jobs",
    "list": "registry.superweights.cli:list_models",
    "lookup": "registry.superweights.cli:lookup",
    "quantize-check": "workers.commands.quantize_check:quantize_check",
    "retract": "registry.superweights.cli:retract",
    "serve": "registry.server:serve",
    "setup": "registry.db_cli:setup",
    "submit": "registry.jobs.cli:submit",
    "token": "registry.auth.cli:token",
    "worker": "workers.worker.command:worker",
}


class SwregGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

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


if __name__ == "__main__":
    main()
