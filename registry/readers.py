"""Where a read command reads from: the local registry database, or a swreg server over HTTP
(`--api URL`, or the environment variable SWREG_API).

Both readers answer with the same documents (the server serves what the database holds, in
the shapes `registry.superweights.documents` and the job schemas fix), so a command prints the
same output either way. Imports are inside the methods: a command's `-h` loads neither the
database nor httpx.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click

from registry.paths import MAX_PAGE  # longer listings are read page by page

if TYPE_CHECKING:
    from registry.jobs.schemas import JobOut

API_ENV = "SWREG_API"


def _check_url(ctx: click.Context, param: click.Parameter, url: str | None) -> str | None:
    """An http(s) address with a host, checked before anything is read."""
    if url is None or url == "":
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{url!r}: expected http(s)://HOST[:PORT], e.g. http://127.0.0.1:8000"
        )
    return url


def api_option(command):
    """`--api URL` (default: $SWREG_API): read from that swreg server instead of the local
    database."""
    return click.option(
        "--api",
        "api_url",
        metavar="URL",
        envvar=API_ENV,
        callback=_check_url,
        help=f"Read from this swreg server (e.g. http://127.0.0.1:8000) instead of the local "
        f"database; default ${API_ENV}.",
    )(command)


class LocalReader:
    """The registry database named by SWREG_DATABASE_URL."""

    def __init__(self) -> None:
        from registry.migrate import open_registry

        self._sessions = open_registry()

    def _read(self, work):
        from registry.database import transaction

        with transaction(self._sessions) as session:
            return work(session)

    def lookup(self, model: str, revision: str | None) -> dict[str, Any]:
        from registry.superweights import service

        return self._read(lambda s: service.lookup_document(s, model, revision))

    def models_page(
        self, *, limit: int, offset: int, after: str | None, search: str | None
    ) -> dict[str, Any]:
        from registry.superweights import service

        return self._read(
            lambda s: service.models_page(s, limit=limit, offset=offset, after=after, search=search)
        )

    def index_text(self, generated_at: datetime | None) -> str:
        from registry.index import service

        return self._read(
            lambda s: service.dumps(service.export_document(s, generated_at=generated_at))
        )

    def jobs(self, *, state: str | None, limit: int, after: int | None) -> list[JobOut]:
        from registry.jobs import service
        from registry.jobs.schemas import JobOut
        from registry.jobs.states import JobState

        return self._read(
            lambda s: [
                JobOut.of(j)
                for j in service.list_jobs(
                    s, state=JobState(state) if state else None, limit=limit, after=after
                )
            ]
        )

    def job(self, job_id: int) -> JobOut:
        from registry.jobs import service
        from registry.jobs.eta import job_estimate
        from registry.jobs.schemas import JobOut

        def read(session) -> JobOut:
            job = service.get_job(session, job_id)
            return JobOut.of(job, eta=job_estimate(session, job))

        return self._read(read)


class RemoteReader:
    """A swreg server's HTTP API, through the Python client (`swreg.client.Client`)."""

    def __init__(self, url: str) -> None:
        from swreg.client import Client

        self.client = Client(url)

    def lookup(self, model: str, revision: str | None) -> dict[str, Any]:
        return self.client.get_json(f"/models/{quote(model, safe='/')}", revision=revision)

    def models_page(
        self, *, limit: int, offset: int, after: str | None, search: str | None
    ) -> dict[str, Any]:
        """The page the local reader gives, read in server pages of at most MAX_PAGE, each after
        the last (only the first skips `offset`)."""
        items: list[dict[str, Any]] = []
        skip, cursor = offset, after
        while True:
            page = self.client.get_json(
                "/models",
                limit=min(MAX_PAGE, limit - len(items)),
                after=cursor,
                q=search,
                offset=skip or None,
            )
            items += page["items"]
            skip, cursor = 0, page["next"]
            if cursor is None or len(items) >= limit:
                break
        return {
            "total": page["total"],
            "limit": limit,
            "offset": offset,
            "items": items,
            "next": cursor,
        }

    def index_text(self, generated_at: datetime | None) -> str:
        text = self.client.get_text("/index")
        if generated_at is None:
            return text
        # As the local export pins it: the same document with its time replaced.
        from registry.clock import format_time
        from registry.index.document import dumps

        document = json.loads(text)
        document["meta"]["generated_at"] = format_time(generated_at)
        return dumps(document)

    def jobs(self, *, state: str | None, limit: int, after: int | None) -> list[JobOut]:
        from registry.jobs.schemas import JobOut

        found: list[JobOut] = []
        cursor = after
        while len(found) < limit:
            page = self.client.get_json(
                "/jobs", state=state, limit=min(MAX_PAGE, limit - len(found)), after=cursor
            )
            found += [JobOut.model_validate(j) for j in page["items"]]
            cursor = page["next"]
            if cursor is None:
                break
        return found

    def job(self, job_id: int) -> JobOut:
        return self.client.job(job_id)


def reader(api_url: str | None) -> LocalReader | RemoteReader:
    if api_url is None:
        return LocalReader()
    return RemoteReader(api_url)
