"""The `swreg` command line.

Each command lives next to the code it drives (the registry's domains, the worker, the science's
commands); this module only names them, imports one when it is used, and turns every error a
user can cause into one line on stderr with the exit code of its kind (never a traceback).

Start-up: `swreg --help` lists every command with its one-line summary from the table below,
without importing any command module (click's own group help would import them all), and a
command module imports its heavy dependencies (fastapi, sqlalchemy, pydantic, torch,
transformers, huggingface_hub) inside the command body, so `swreg CMD --help` loads none of
them. tests/registry/test_cli_conventions.py checks that each summary is the command's own first
sentence
and what each help imports; `swreg bench-cli` measures the time.

Exit codes (README, "Exit codes"): 0 done; 1 the request was well formed and could not be
carried out (not found, unavailable, conflict, out-of-date database); 2 the request itself is
wrong (click's usage errors and swreg's `InvalidInput`, a refused checkpoint: asking again
unchanged gives the same answer); 3 `swreg submit --wait` saw the job fail.
"""

import importlib
import sys
from typing import NamedTuple, NoReturn

import click

from registry import __version__
from registry.errors import SwregError
from workers.contract.errors import EXIT_FAILURE

HELP_OPTIONS = ["-h", "--help"]


class Entry(NamedTuple):
    target: str  # "module:attribute" of the click command
    summary: str  # its help's first sentence, as `swreg --help` lists it
    # The extra of pyproject.toml the command needs beyond the light client ("server": the
    # database and the HTTP stack; "worker": that and torch, transformers, the Hub). Read
    # commands need none with --api; without it they read the local database.
    extra: str = "server"


COMMANDS = {
    "bench": Entry(
        "workers.commands.bench.command:bench",
        "Time swreg's job against the naive approach and print the figures.",
        "worker",
    ),
    "bench-api": Entry(
        "registry.bench_api:bench_api",
        "Requests/s and p99 of the lookup, model list and index against a FastAPI hello-world "
        "served the same way, in one run (needs `wrk`: apt-get install wrk).",
    ),
    "bench-registry": Entry(
        "registry.bench_registry:bench_registry",
        "Import, re-import, export, the served index, lookups, deep list pages, search and the "
        "changes feed of a generated registry of N models, on SQLite and PostgreSQL (about ten "
        "minutes per 10,000 models and database on two cores; 100,000 samples the "
        "whole-registry reads, see the module's docstring).",
    ),
    "bench-cli": Entry(
        "registry.bench_cli:bench_cli",
        "Median wall time of `swreg --help` and of every command's help, each in a fresh process.",
    ),
    "db": Entry("registry.db_cli:db", "Manage the registry database schema (SWREG_DATABASE_URL)."),
    "detect": Entry(
        "workers.commands.detect:detect",
        "Find the super weights of MODEL (a Hub id or a local directory) and prove them by "
        "ablation.",
        "worker",
    ),
    "export": Entry(
        "registry.index.cli:export", "Write the whole registry as one JSON index document."
    ),
    "fetch-example": Entry(
        "workers.commands.fetch_example:fetch_example",
        "Make the example model, SmolLM2-135M-Instruct in Hugging Face format, and print its "
        "folder.",
        "worker",
    ),
    "import": Entry(
        "registry.index.cli:import_",
        "Load a JSON index (validated as it is read; all or nothing; importing twice = once).",
    ),
    "jobs": Entry(
        "registry.jobs.cli:jobs", "List jobs, newest first (`swreg jobs show ID` for one)."
    ),
    "list": Entry("registry.superweights.cli:list_models", "List the models in the registry."),
    "lookup": Entry(
        "registry.superweights.cli:lookup",
        "Show the super weights recorded for MODEL (e.g. huggyllama/llama-7b).",
    ),
    "quantize-check": Entry(
        "workers.commands.quantize_check:quantize_check",
        "Perplexity of MODEL under round-to-nearest weight quantization, with and without its "
        "super weights kept in full precision.",
        "worker",
    ),
    "retract": Entry(
        "registry.superweights.cli:retract",
        "Retract a coordinate or a super expert: it stays in the registry, marked retracted "
        "with the reason.",
    ),
    "serve": Entry("registry.server:serve", "Serve the HTTP API (and OpenAPI docs)."),
    "setup": Entry(
        "registry.db_cli:setup",
        "Make a ready registry: migrate the database and load the published index and the "
        "reported super experts (idempotent).",
    ),
    "submit": Entry(
        "registry.jobs.cli:submit",
        "Queue MODEL (a Hub id or a local directory) for the workers.",
        "worker",
    ),
    "token": Entry(
        "registry.auth.cli:token",
        "API tokens: `Authorization: Bearer <token>` on HTTP writes (reads are open).",
    ),
    "worker": Entry(
        "workers.worker.command:worker",
        "Process queued jobs: fetch, detect, validate, record.",
        "worker",
    ),
}


def load_command(name: str) -> click.Command:
    module, attribute = COMMANDS[name].target.split(":")
    return getattr(importlib.import_module(module), attribute)


def every_command() -> dict[str, click.Command]:
    """Every command and every group's subcommand by its path ("lookup", "jobs show"), each
    module imported: for the benchmark and the tests, never for a user's command."""
    paths = {}
    for name in sorted(COMMANDS):
        command = paths[name] = load_command(name)
        if isinstance(command, click.Group):
            for sub, subcommand in sorted(command.commands.items()):
                paths[f"{name} {sub}"] = subcommand
    return paths


def _fail(message: str, exit_code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


def _usage_error(exc: click.UsageError) -> NoReturn:
    hint = f" (see '{exc.ctx.command_path} -h')" if exc.ctx is not None else ""
    _fail(f"{exc.format_message()}{hint}", exc.exit_code)


class SwregGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return load_command(name) if name in COMMANDS else None

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            from registry.suggestions import close_matches

            # As click words its own "No such option ... Did you mean ...?".
            matches = close_matches(name, COMMANDS)
            hint = f" Did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""
            raise click.UsageError(f"No such command {name!r}.{hint}", ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's own layout, from the table's summaries instead of the imported commands."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        # A bare command carrying the summary shortens it exactly as click shortens a help.
        rows = [
            (name, click.Command(name, help=entry.summary).get_short_help_str(limit))
            for name, entry in sorted(COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # `swreg` alone: click prints the help
        except click.UsageError as exc:
            _usage_error(exc)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SwregError as exc:
            _fail(str(exc), exc.exit_code)
        except click.exceptions.NoArgsIsHelpError:
            raise  # `swreg db` alone: click prints the group's help
        except click.UsageError as exc:  # before ClickException, its base
            _usage_error(exc)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except ModuleNotFoundError as exc:
            # The light client running a server or worker command: say which extra to install.
            from registry.extras import install_hint

            entry = COMMANDS.get(ctx.invoked_subcommand or "")
            hint = install_hint(exc, entry.extra if entry else None)
            if hint is None:
                raise
            _fail(hint, EXIT_FAILURE)


@click.group(cls=SwregGroup, context_settings={"help_option_names": HELP_OPTIONS})
@click.version_option(__version__, prog_name="swreg")
def main() -> None:
    """swreg: find, prove, store and serve the super weights of language models.

    \b
    Examples:
      swreg setup                                   # a ready registry with the published index
      swreg lookup huggyllama/llama-7b
      swreg detect "$(swreg fetch-example)"            # the example model, made once
      swreg submit HuggingFaceTB/SmolLM2-135M-Instruct --wait
      swreg lookup -h                               # each command's options and examples
    """


if __name__ == "__main__":
    main()
