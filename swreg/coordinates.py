"""`coordinates_for`: the super-weight coordinates of the weights you have, from a swreg API or
an index file.

Coordinates belong to one exact revision, so the first step is always to pin what is asked for:

- a **local directory** is pinned by the content hash of its weight files (the same
  `sha256:…` the registry records when the directory is submitted: docs/coordinates.md), and
  found under whatever model id it was recorded with;
- a **Hub model** is pinned to a full commit sha: a given 40-hex sha as is, a branch, tag or
  nothing (main) through the Hub, or offline through the local Hugging Face cache. `unknown`
  asks for the published entries, whose revision the paper does not name.

Nothing is guessed: a revision the source does not hold is `NotFound`, with a hint when the
source has the model's published coordinates.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from registry.superweights.schemas import RevisionOut, SuperExpertOut, SuperWeightOut
from swreg.client import Client
from swreg.index import Index
from workers.contract.errors import InvalidInput, NotFound, Unavailable
from workers.sources.errors import HubRefused
from workers.sources.pinning import local_or_hub

# What a caller usually wants kept: weights proven by ablation at this revision, and the
# paper's published ones (revision `unknown`). Candidates, rejected and retracted coordinates are
# left out unless asked for.
DEFAULT_STATES = ("verified", "published")
UNKNOWN_REVISION = "unknown"
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class PublishedFallback(UserWarning):
    """`coordinates_for` answered with a Hub model's published coordinates (revision unknown)
    because it could not pin the model to a commit."""


@dataclass(frozen=True)
class Coordinates:
    """The coordinates of one model revision, as a source holds them."""

    model_id: str
    revision: str
    source: str
    super_weights: list[SuperWeightOut]
    entry: RevisionOut  # the whole model revision, evidence and quantization check included
    # Every model id the same weights are recorded under (a local directory's content hash may
    # be recorded under several); `model_id` is the one whose entry answered.
    model_ids: tuple[str, ...] = ()
    # What the answer is, when it is not simply the revision asked for (said, never silent).
    note: str | None = None

    @property
    def super_experts(self) -> list[SuperExpertOut]:
        """The revision's super experts (mixture-of-experts models), every state."""
        return list(self.entry.super_experts)

    def __iter__(self) -> Iterator[SuperWeightOut]:
        return iter(self.super_weights)

    def __len__(self) -> int:
        return len(self.super_weights)


def _source(api: str | Client | None, index: str | Path | Index | None) -> Client | Index:
    if (api is None) == (index is None):
        raise InvalidInput(
            "coordinates_for needs one source: api=URL or Client, or index=PATH or Index"
        )
    if index is not None:
        return index if isinstance(index, Index) else Index.load(index)
    if isinstance(api, Client):
        return api
    assert api is not None  # one source is given (checked above)
    return Client(api)


def _local_entries(
    directory: Path, source: Client | Index, model_id: str | None
) -> list[RevisionOut]:
    """Every entry recorded at the directory's content hash (under `model_id` only, if given)."""
    # Imported here: hashing pulls in the checkpoint rules (safetensors, huggingface_hub).
    from workers.sources.pinning import hash_local_weights, local_revision

    revision = local_revision(hash_local_weights(directory))
    try:
        entries = source.at_revision(revision)
    except NotFound:
        entries = []
    if model_id is not None:
        entries = [e for e in entries if e.model_id == model_id]
    if not entries:
        under = f" under {model_id}" if model_id else ""
        raise NotFound(
            f"{directory}: its weights (revision {revision}) are not in {source.source}{under}"
        )
    return entries


def _latest(entries: list[RevisionOut]) -> RevisionOut:
    """One set of weights recorded under several ids: the latest analysis answers (the one
    updated last; the first id alphabetically among equals)."""
    # max() keeps the first of equals: iterate in id order.
    return max(sorted(entries, key=lambda e: e.model_id), key=lambda e: e.updated_at or "")


def _pin(model_id: str, revision: str | None) -> str:
    if revision is not None and (_COMMIT_SHA.match(revision) or revision == UNKNOWN_REVISION):
        return revision
    from workers.sources.pinning import resolve_revision

    return resolve_revision(model_id, revision)


def _published_fallback(model_id: str, source: Client | Index, why: str) -> tuple[RevisionOut, str]:
    """A Hub id that cannot be pinned here (offline and not cached, the Hub unreachable, no Hub
    client installed): its published coordinates, when the source has them, with a note saying
    so (they are keyed `revision="unknown"`: not checked at the weights the caller has)."""
    entry = source.lookup(model_id, UNKNOWN_REVISION).revisions[0]
    note = (
        f"{model_id} could not be pinned to a commit ({why}): these are its published "
        "coordinates (revision='unknown'), not checked by swreg at the weights you have"
    )
    # Pointed at the caller of coordinates_for (through _hub_entry and _try_published).
    warnings.warn(note, PublishedFallback, stacklevel=5)
    return entry, note


def _hub_entry(
    model_id: str, revision: str | None, source: Client | Index
) -> tuple[RevisionOut, str | None]:
    try:
        pinned = _pin(model_id, revision)
    except ModuleNotFoundError as exc:  # the light client: no huggingface_hub to pin with
        if revision is not None:
            raise
        why = f"{exc.name} is not installed: pip install 'swreg[worker]'"
        return _try_published(model_id, source, why, exc)
    except (Unavailable, HubRefused) as exc:
        if revision is not None:
            raise
        return _try_published(model_id, source, str(exc), exc)
    try:
        return source.lookup(model_id, pinned).revisions[0], None
    except NotFound as exc:
        if pinned != UNKNOWN_REVISION:
            try:
                source.lookup(model_id, UNKNOWN_REVISION)
            except NotFound:
                raise exc from None
            raise NotFound(
                f"{exc}; its published coordinates (revision unknown) are there: "
                "pass revision='unknown' to use them"
            ) from None
        raise


def _try_published(
    model_id: str, source: Client | Index, why: str, cause: BaseException
) -> tuple[RevisionOut, str]:
    try:
        return _published_fallback(model_id, source, why)
    except NotFound:
        raise cause from None


def coordinates_for(
    model: str | Path,
    revision: str | None = None,
    *,
    api: str | Client | None = None,
    index: str | Path | Index | None = None,
    model_id: str | None = None,
    states: tuple[str, ...] | None = DEFAULT_STATES,
) -> Coordinates:
    """The coordinates of `model` at `revision`, from one source: `api` (a server address or a
    `Client`) or `index` (an index file or an `Index`).

    `model` is a local directory (pinned by the content hash of its weights; recorded under
    several ids, the latest analysis answers and `model_ids` lists them all; `model_id` picks
    one) or a Hub id (`revision`: a
    branch, tag or sha, default main, pinned to its commit; or `unknown` for the published
    entries). Which it is, is decided as the command line decides it (a Path, or a name written
    as a path or naming something that exists, is a local folder: `local_or_hub`).

    A Hub id asked for without a revision that cannot be pinned here (offline and not in the
    Hugging Face cache, the Hub unreachable, or no huggingface_hub installed) answers with its
    published coordinates (revision `unknown`) when the source has them, saying so: in `.note`
    and as a `PublishedFallback` warning.
    """
    path = local_or_hub(model, revision)
    if path is None and model_id is not None and model_id != str(model):
        raise InvalidInput("model_id applies to local directories; a Hub model is its repo id")
    source = _source(api, index)
    note = None
    try:
        if path is not None:
            entries = _local_entries(path.resolve(), source, model_id)
            entry = _latest(entries)
            ids = tuple(sorted(e.model_id for e in entries))
            if len(ids) > 1:
                note = (
                    f"these weights are recorded under {len(ids)} model ids ({', '.join(ids)}): "
                    f"answered from {entry.model_id}"
                )
        else:
            entry, note = _hub_entry(str(model), revision, source)
            ids = (entry.model_id,)
    finally:
        if isinstance(source, Client) and source is not api:  # made here from an address
            source.close()
    chosen = [sw for sw in entry.super_weights if states is None or sw.state in states]
    return Coordinates(entry.model_id, entry.revision, source.source, chosen, entry, ids, note)
