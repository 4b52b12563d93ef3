"""Pinning: what a user names (a Hub id with a branch, tag or sha; a local directory) turned
into the exact revision a coordinate belongs to. The registry calls this at submission.

- `check_model_id` and `check_revision` validate names at the boundary, before anything uses
  them: a model id by the Hub's own rules, a revision as a 40-hex sha or a git ref name.
- `resolve_revision` pins a Hub branch, tag or short sha to the full commit sha.
- `local_folder` tells a local folder from a Hub id by how the name is written.
- `hash_local_weights` + `local_revision` pin a directory by the content hash of its weights.

huggingface_hub and the checkpoint code (safetensors) are imported inside the functions that
use them: the registry imports this module to validate names, and neither a server answering
lookups nor `swreg --help` has any use for them.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from workers.contract.errors import InvalidInput
from workers.science.errors import CheckpointRefused
from workers.sources.errors import HubNotFound, HubRefused, HubUnavailable

__all__ = [
    "base_model_of",
    "check_model_id",
    "check_revision",
    "hash_local_weights",
    "local_folder",
    "local_revision",
    "configure_hub",
    "resolve_revision",
]

DEFAULT_BRANCH = "main"
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA = re.compile(r"^[0-9a-f]{7,39}$")
# A ref file holds a 40-hex sha (huggingface_hub writes it without a newline): read no more.
MAX_REF_FILE_BYTES = 64
# How much of a hostile name an error message repeats.
SHOWN_CHARS = 80

# The Hub's repository id rules (huggingface_hub's validate_repo_id, which check_model_id
# runs) as one regular expression, for documents that cannot run Python (the OpenAPI schema):
# `name` or `namespace/name`; each part 1-96 characters of ASCII letters, digits, `_`, `.`, `-`,
# starting and ending with a letter, digit or `_`; no `--` or `..`; not ending in `.git`.
MODEL_ID_PATTERN = (
    r"^(?!.*(?:--|\.\.))(?!.*\.git$)"
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?/)?"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$"
)
MAX_MODEL_ID_CHARS = 96 + 1 + 96

# A revision a user may name: a branch or tag by git's ref-name rules (check-ref-format), which
# a 40-hex sha also satisfies. No control characters, space, ~ ^ : ? * [ or \; no `..`, `@{` or
# `//`; no part that starts with `.` or ends with `.lock`; not starting with `/` or `-`, not
# ending with `/` or `.`; not `@` alone. At most MAX_REVISION_CHARS (git allows longer ref
# names; the Hub's are short, and the jobs table keeps the requested revision in 255).
MAX_REVISION_CHARS = 255
REVISION_NAME_PATTERN = (
    r"^(?![/.-])(?!@$)"
    r"(?!.*(?:\.\.|@\{|//|/\.|\.lock/|\.lock$|[/.]$))"
    r"[^\x00-\x20\x7f-\x9f~^:?*\[\\]{1,255}$"
)

_MODEL_ID_RE = re.compile(MODEL_ID_PATTERN)
_REVISION_NAME_RE = re.compile(REVISION_NAME_PATTERN, re.DOTALL)


def _shown(text: str) -> str:
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…")


# --- names at the boundary ----------------------------------------------------------------------


@cache
def _repo_id_validator():
    # huggingface_hub.utils takes most of a second to import: only when a name is checked.
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    return validate_repo_id, HFValidationError


def check_model_id(model_id: object) -> str:
    """A Hub repository id by the Hub's rules: huggingface_hub's own validator, and ASCII only
    (the Hub's letters and digits are ASCII; the validator's regular expression takes any Unicode
    letter), which
    together are MODEL_ID_PATTERN. InvalidInput otherwise. Registry ids of local directories
    (`local/<name>`) follow the same rules."""
    if not isinstance(model_id, str):
        raise InvalidInput(f"invalid model id: expected a string, got {type(model_id).__name__}")
    validate, error = _repo_id_validator()
    try:
        if not model_id.isascii():
            raise error("not ASCII")
        validate(model_id)
    except error:
        raise InvalidInput(
            f"invalid model id {_shown(model_id)}: expected `name` or `namespace/name` of "
            "letters, digits, '-', '_' and '.' (at most 96 characters each, no '--' or '..')"
        ) from None
    return model_id


def check_revision(revision: object) -> str:
    """A branch, tag or commit name by REVISION_NAME_PATTERN (git's ref-name rules, bounded);
    InvalidInput otherwise. Nothing is looked up: this only says the name is well formed."""
    if not isinstance(revision, str):
        raise InvalidInput(f"invalid revision: expected a string, got {type(revision).__name__}")
    if not _REVISION_NAME_RE.match(revision):
        raise InvalidInput(
            f"invalid revision {_shown(revision)}: not a branch, tag or commit name (git's "
            f"ref-name rules, at most {MAX_REVISION_CHARS} characters)"
        )
    return revision


# --- pinning a Hub revision ----------------------------------------------------------------------


def configure_hub(*, connect_seconds: float, read_seconds: float) -> None:
    """Bound every Hub call of this process (the registry's settings; see hub_client)."""
    from workers.sources import hub_client

    hub_client.configure(hub_client.HubTimeouts(connect=connect_seconds, read=read_seconds))


def resolve_revision(repo_id: str, revision: str | None = None, *, token: str | None = None) -> str:
    """The full commit sha of `revision` (branch, tag, sha or short sha; default: main).

    Both names are validated first (check_model_id, check_revision). Asks the Hub first. When the
    Hub cannot be asked the local cache stands in: huggingface_hub records every branch/tag it
    resolved in refs/<name> and keeps each commit's files in snapshots/<sha>, which is enough to
    pin a revision that was fetched before. In offline mode (HF_HUB_OFFLINE=1) a revision the
    cache does not have is refused (asking again will not help); when the Hub is unreachable or
    failing it is HubUnavailable (worth retrying).
    """
    check_model_id(repo_id)
    if revision is not None:
        check_revision(revision)
    from httpx2 import TransportError  # huggingface_hub's HTTP client
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        DisabledRepoError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from workers.sources import hub_client

    bounds = hub_client.current()
    try:
        info = HfApi(token=token).model_info(repo_id, revision=revision, timeout=bounds.read)
    except HFValidationError as exc:
        raise HubRefused(f"invalid Hub repository id {_shown(repo_id)}: {exc}") from None
    except GatedRepoError:  # before RepositoryNotFoundError, its base class
        raise HubRefused(
            f"{repo_id} is a gated repository: accept its terms on the Hub and set HF_TOKEN"
        ) from None
    except RevisionNotFoundError:
        raise HubNotFound(f"revision {revision!r} not found in {repo_id}") from None
    except RepositoryNotFoundError:
        raise HubNotFound(
            f"repository {repo_id} not found on the Hub (private? set HF_TOKEN)"
        ) from None
    except DisabledRepoError:
        raise HubRefused(f"repository {repo_id} is disabled on the Hub") from None
    except OfflineModeIsEnabled:
        return _resolve_from_cache(repo_id, revision, reason="offline mode", retryable=False)
    except hub_client.HubStalled:
        return _resolve_from_cache(
            repo_id,
            revision,
            reason=f"the Hub did not answer within {bounds.read:g} s",
            retryable=True,
        )
    except TransportError:
        return _resolve_from_cache(
            repo_id, revision, reason="the Hub is unreachable", retryable=True
        )
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status is not None and (status >= 500 or status == 429):
            return _resolve_from_cache(
                repo_id, revision, reason=f"the Hub is failing (HTTP {status})", retryable=True
            )
        raise HubRefused(f"the Hub refused {repo_id}: {str(exc).splitlines()[0]}") from None
    if not info.sha:
        raise HubRefused(f"the Hub returned no commit for {repo_id}@{revision or DEFAULT_BRANCH}")
    return info.sha


def repo_cache_dir(repo_id: str, cache_dir: Path | None = None) -> Path:
    """Where huggingface_hub caches a model repository (its own folder naming)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    root = Path(cache_dir or constants.HF_HUB_CACHE).expanduser()
    return root / repo_folder_name(repo_id=repo_id, repo_type="model")


def cached_ref(storage: Path, name: str) -> str | None:
    """The commit sha the cache recorded for branch or tag `name`, or None.

    `name` has passed check_revision, and the ref file must still lie inside the repository's
    refs/ folder once every link is followed, be a regular file, and hold a 40-hex sha: no other
    file is ever read, and no more than MAX_REF_FILE_BYTES of it."""
    refs = (storage / "refs").resolve()
    candidate = (refs / name).resolve()
    if not candidate.is_relative_to(refs) or candidate == refs or not candidate.is_file():
        return None
    with candidate.open("rb") as handle:
        content = handle.read(MAX_REF_FILE_BYTES + 1)
    text = content.decode("ascii", errors="replace").strip()
    return text if len(content) <= MAX_REF_FILE_BYTES and COMMIT_SHA.match(text) else None


def _resolve_from_cache(repo_id: str, revision: str | None, *, reason: str, retryable: bool) -> str:
    name = revision or DEFAULT_BRANCH
    storage = repo_cache_dir(repo_id)
    snapshots = storage / "snapshots"
    kind = HubUnavailable if retryable else HubRefused
    not_cached = kind(
        f"{repo_id}@{name} cannot be resolved: {reason} and it is not in the local Hub cache"
    )
    if not snapshots.is_dir():
        raise not_cached
    if COMMIT_SHA.match(name):
        sha = name
    elif found := cached_ref(storage, name):
        sha = found
    elif SHORT_SHA.match(name):
        matches = [p.name for p in snapshots.iterdir() if p.name.startswith(name)]
        if len(matches) > 1:
            raise HubRefused(f"short revision {name!r} of {repo_id} is ambiguous in the cache")
        sha = matches[0] if matches else ""
    else:
        sha = ""
    # `sha` is 40 hex digits here (or empty): snapshots/<sha> stays inside the cache.
    if not COMMIT_SHA.match(sha) or not (snapshots / sha).is_dir():
        raise not_cached
    return sha


# --- a local folder or a Hub id ------------------------------------------------------------------

# How a path is written that can never be a Hub id: relative to here or to a parent, absolute,
# or in a home folder.
PATH_PREFIXES = ("./", "../", "/", "~")


def local_folder(model: str | Path) -> Path | None:
    """The local folder `model` names, or None when it names a Hub model.

    A name is a path when it is written as one (a Path, or starting with ./, ../, / or ~; `.`
    and `..`) or when something exists at it (an existing folder wins over a Hub id of the same
    spelling, as in transformers). A path that does not exist, or that is a file, is refused
    (InvalidInput) with what was meant, instead of being tried as a Hub id."""
    text = str(model)
    path = Path(text).expanduser()
    written_as_path = (
        isinstance(model, Path) or text.startswith(PATH_PREFIXES) or text in (".", "..")
    )
    if not written_as_path and not path.exists():
        return None
    if not path.exists():
        raise InvalidInput(
            f"no such folder: {text} (a local model is a folder; a Hub model is written "
            "namespace/name)"
        )
    if not path.is_dir():
        raise InvalidInput(
            f"{text} is a file: a local model is the folder that holds its config.json and "
            "*.safetensors files"
        )
    return path


def local_or_hub(model: str | Path, revision: str | None = None) -> Path | None:
    """The one decision every command makes about MODEL: the local folder it names (`revision`
    refused: a folder is pinned by the content hash of its weights), or None for a Hub id (pinned
    at `revision`, a branch, tag or sha). The message is the same wherever MODEL is read."""
    folder = local_folder(model)
    if folder is not None and revision is not None:
        raise InvalidInput(
            f"--revision applies to Hub models; {model} is a local folder, pinned by the content "
            "hash of its weights"
        )
    return folder


# --- pinning a local directory -------------------------------------------------------------------


def hash_local_weights(directory: Path) -> dict[str, str]:
    """sha256 of each weight file of a directory; refuses a directory that is no checkpoint."""
    from workers.science.checkpoint import checked_weight_names, sha256_of

    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise CheckpointRefused(f"{directory}: not a directory")
    return {name: sha256_of(directory / name) for name in checked_weight_names(directory)}


def local_revision(weight_sha256: dict[str, str]) -> str:
    """The revision of a local directory from its weight files' sha256 (the checkpoint rules'
    formula, `swreg detect` reports the same)."""
    from workers.science import checkpoint

    return checkpoint.local_revision(weight_sha256)


# --- searching the Hub (whole-Hub submission) ---------------------------------------------------

# The Hub's sort keys a search takes (most first).
HubSort = Literal["downloads", "likes", "created_at", "last_modified"]


@dataclass(frozen=True)
class Found:
    """A model a Hub search lists."""

    model_id: str
    sha: str | None
    downloads: int | None
    base_model: str | None


def base_model_of(value: object) -> str | None:
    """The one base model a model card's `base_model:` names, or None.

    A string, or a list of exactly one string, names a base; a list of several is a merge of
    those models, which has no single lineage to trace, so it names none. A value that is not a
    valid Hub id (check_model_id: a path, a URL, anything longer than an id) names none either:
    a card is the model author's text, never trusted. The Hub search and the worker's fetch
    read a card's base by this one rule."""
    if isinstance(value, list):
        value = value[0] if len(value) == 1 else None
    if not isinstance(value, str):
        return None
    try:
        return check_model_id(value)
    except InvalidInput:
        return None


def _base_model(info) -> str | None:
    card = getattr(info, "card_data", None) or getattr(info, "cardData", None) or {}
    value = card.get("base_model") if hasattr(card, "get") else getattr(card, "base_model", None)
    return base_model_of(value)


def search_models(
    *,
    author: str | None,
    task: str | None,
    library: str | None,
    base_model: str | None,
    sort: HubSort | None,
    limit: int,
) -> Iterator[Found]:
    """The models the Hub lists for a search (author, pipeline task, library, base model; sorted,
    most first; at most `limit`), page by page, each with the commit the listing names."""
    from httpx2 import TransportError
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    filters = [f for f in (library, base_model and f"base_model:{base_model}") if f]
    try:
        for info in HfApi().list_models(
            author=author,
            pipeline_tag=task,
            filter=filters or None,
            sort=sort,
            limit=limit,
            cardData=True,
        ):
            yield Found(info.id, info.sha, info.downloads, _base_model(info))
    except TransportError as exc:
        raise HubUnavailable(f"the Hub is unreachable for a search: {exc}") from None
    except HfHubHTTPError as exc:
        raise HubRefused(f"the Hub refused the search: {str(exc).splitlines()[0]}") from None
