"""A typed client for swreg's HTTP API (`swreg serve`), built on httpx.

Answers are parsed into the server's own pydantic schemas (`ModelLookup`, `ModelPage`,
`RevisionOut`, `JobOut`, `SubmissionOut`), so a field the server adds or renames shows up here
too. An error answer raises one of swreg's error kinds with the server's one-line message
(`swreg.errors`): 404 is `NotFound`, 422 `InvalidInput`, 401 `Unauthorized`, a 5xx or an
unreachable server `Unavailable`.

    with Client("http://127.0.0.1:8000", token="swreg_…") as api:
        api.lookup("huggyllama/llama-7b").revisions[0].super_weights
        job = api.wait(api.submit("HuggingFaceTB/SmolLM2-135M-Instruct").job.id)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote

import httpx

from registry.paths import API_PREFIX, MAX_PAGE
from registry.superweights.schemas import ModelLookup, ModelPage, ModelSummary, RevisionOut
from swreg.errors import ApiUnavailable, error_for

if TYPE_CHECKING:  # the jobs' schemas import the database models: loaded when a job is asked for
    from registry.changes.schemas import ChangesPage
    from registry.jobs.schemas import JobOut, SubmissionOut
    from swreg.index import Index

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_POLL_SECONDS = 2.0
FINISHED_STATES = ("succeeded", "failed")


def api_root(url: str) -> str:
    """The API's root for a server address, with or without the /api/v1 prefix."""
    url = url.rstrip("/")
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


class Client:
    """The HTTP API of one swreg server. `token` (an API token from `swreg token create`) is
    needed only to submit."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ):
        self.url = api_root(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    @property
    def source(self) -> str:
        """What the answers come from (as `Index.source` names its file)."""
        return self.url

    # --- transport ------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnavailable(f"cannot reach the swreg API at {self.url}: {exc}") from None
        if response.is_success:
            return response
        try:
            error = response.json()["error"]
            code, message = error.get("code"), error["message"]
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message = None, f"{response.status_code} {response.reason_phrase}"
        raise error_for(response.status_code, code, message)

    def _get(self, path: str, **params: Any) -> Any:
        return self.get_json(path, **params)

    def get_json(self, path: str, **params: Any) -> Any:
        """The JSON answer of `GET path` under the API root, as the server sent it (parameters
        that are None are left out)."""
        query = {k: v for k, v in params.items() if v is not None}
        return self._request("GET", path, params=query).json()

    def get_text(self, path: str) -> str:
        """The body of `GET path` under the API root, as text (the index's canonical bytes)."""
        return self._request("GET", path).text

    # --- reads ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._get("/health")

    def lookup(self, model_id: str, revision: str | None = None) -> ModelLookup:
        """Every revision of a model (or the one `revision`: a 40-hex sha, sha256:… or
        unknown) with its coordinates."""
        return ModelLookup.model_validate(
            self._get(f"/models/{quote(model_id, safe='/')}", revision=revision)
        )

    def list_models(
        self,
        *,
        limit: int = 50,
        after: str | None = None,
        search: str | None = None,
        offset: int | None = None,
    ) -> ModelPage:
        """One page of model ids with their revisions and coordinate counts, in binary order:
        those after the model id `after` (the `next` of the previous page), containing
        `search` when given. `offset` is deprecated (it skips items, slowly deep in the list)."""
        return ModelPage.model_validate(
            self._get("/models", limit=limit, after=after, q=search, offset=offset)
        )

    def models(self, search: str | None = None) -> Iterator[ModelSummary]:
        """Every model of the registry (containing `search`, when given), page by page: each
        page read after the last model id of the one before, so none is missed or seen twice
        while models are added."""
        after = None
        while True:
            page = self.list_models(limit=MAX_PAGE, after=after, search=search)
            yield from page.items
            if page.next is None:
                return
            after = page.next

    def at_revision(self, revision: str) -> list[RevisionOut]:
        """Every model revision recorded at `revision` (under any model id); `NotFound` when
        there is none. A local directory is known by its content hash only."""
        document = self._get(f"/revisions/{quote(revision, safe=':')}")
        return [RevisionOut.model_validate(r) for r in document["revisions"]]

    def index(self) -> Index:
        """The whole registry as an index document, to read offline."""
        from swreg.index import Index

        return Index.from_document(self._get("/index"), source=f"{self.url}/index")

    def changes(self, since: str | int = 0, *, limit: int | None = None) -> ChangesPage:
        """One page of the changes feed: the revisions added, updated or retracted after
        `since` (a data version, 0 for everything, or the `next` of the previous page)."""
        from registry.changes.schemas import ChangesPage

        return ChangesPage.model_validate(self._get("/changes", since=str(since), limit=limit))

    def iter_changes(
        self, since: str | int = 0, *, limit: int | None = None
    ) -> Iterator[ChangesPage]:
        """Every page of the feed after `since`, the last one included: a mirror applies each
        page's changes and keeps the last page's `next` to poll with later."""
        while True:
            page = self.changes(since, limit=limit)
            yield page
            if not page.has_more:
                return
            since = page.next

    # --- jobs -----------------------------------------------------------------------------

    def submit(
        self, model: str, revision: str | None = None, *, force: bool = False
    ) -> SubmissionOut:
        """Queue a Hub model (needs a token). The revision is pinned to its commit sha by the
        server; a revision that already has a job returns that job (`created` False), unless
        `force` asks for a new analysis of a revision already done."""
        from registry.jobs.schemas import SubmissionOut

        body: dict[str, Any] = {"model": model}
        if revision is not None:
            body["revision"] = revision
        if force:
            body["force"] = True
        return SubmissionOut.model_validate(self._request("POST", "/submissions", json=body).json())

    def job(self, job_id: int) -> JobOut:
        from registry.jobs.schemas import JobOut

        return JobOut.model_validate(self._get(f"/jobs/{int(job_id)}"))

    def wait(
        self,
        job_id: int,
        *,
        timeout: float | None = None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
    ) -> JobOut:
        """Poll a job until it has succeeded or failed and return it (check its `state`);
        `TimeoutError` after `timeout` seconds (None: wait as long as it takes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state in FINISHED_STATES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout:g} s")
            time.sleep(
                poll_seconds
                if deadline is None
                else min(poll_seconds, max(deadline - time.monotonic(), 0))
            )
