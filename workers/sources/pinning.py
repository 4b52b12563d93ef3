"""Pinning: what a user names (a Hub id with a branch, tag or sha; a local directory) turned
into the exact revision a coordinate belongs to. The registry calls this at submission.

- `resolve_revision` pins a Hub branch, tag or short sha to the full commit sha.
- `hash_local_weights` + `local_revision` pin a directory by the content hash of its weights.
"""

import re
from pathlib import Path

from httpx2 import TransportError  # huggingface_hub's HTTP client
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name

from workers.science.checkpoint import checked_weight_names, local_revision, sha256_of
from workers.science.errors import CheckpointRefused
from workers.sources.errors import HubNotFound, HubRefused

__all__ = ["hash_local_weights", "local_revision", "resolve_revision"]

DEFAULT_BRANCH = "main"
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA = re.compile(r"^[0-9a-f]{7,39}$")


def resolve_revision(repo_id: str, revision: str | None = None, *, token: str | None = None) -> str:
    """The full commit sha of `revision` (branch, tag, sha or short sha; default: main).

    Asks the Hub first. When the Hub cannot be asked (HF_HUB_OFFLINE=1, no network) the local
    cache stands in: huggingface_hub records every branch/tag it resolved in refs/<name> and keeps
    each commit's files in snapshots/<sha>, which is enough to pin a revision that was fetched
    before. We do this ourselves rather than through HfApi.resolve_revision because we also accept
    short shas and must tell "not cached" apart from "does not exist" in the refusal.
    """
    try:
        info = HfApi(token=token).model_info(repo_id, revision=revision)
    except HFValidationError as exc:
        raise HubRefused(f"invalid Hub repository id {repo_id!r}: {exc}") from None
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
    except (OfflineModeIsEnabled, TransportError) as exc:
        return _resolve_from_cache(repo_id, revision, reason=_unreachable(exc))
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code >= 500:
            return _resolve_from_cache(repo_id, revision, reason="the Hub is failing")
        raise HubRefused(f"the Hub refused {repo_id}: {str(exc).splitlines()[0]}") from None
    if not info.sha:
        raise HubRefused(f"the Hub returned no commit for {repo_id}@{revision or DEFAULT_BRANCH}")
    return info.sha


def _unreachable(exc: BaseException) -> str:
    return "offline mode" if isinstance(exc, OfflineModeIsEnabled) else "the Hub is unreachable"


def repo_cache_dir(repo_id: str, cache_dir: Path | None = None) -> Path:
    """Where huggingface_hub caches a model repository (its own folder naming)."""
    root = Path(cache_dir or constants.HF_HUB_CACHE).expanduser()
    return root / repo_folder_name(repo_id=repo_id, repo_type="model")


def _resolve_from_cache(repo_id: str, revision: str | None, *, reason: str) -> str:
    name = revision or DEFAULT_BRANCH
    storage = repo_cache_dir(repo_id)
    snapshots = storage / "snapshots"
    not_cached = HubRefused(
        f"{repo_id}@{name} cannot be resolved: {reason} and it is not in the local Hub cache"
    )
    if not snapshots.is_dir():
        raise not_cached
    if COMMIT_SHA.match(name):
        sha = name
    elif (ref := storage / "refs" / name).is_file():
        sha = ref.read_text().strip()
    elif SHORT_SHA.match(name):
        matches = [p.name for p in snapshots.iterdir() if p.name.startswith(name)]
        if len(matches) > 1:
            raise HubRefused(f"short revision {name!r} of {repo_id} is ambiguous in the cache")
        sha = matches[0] if matches else ""
    else:
        sha = ""
    if not sha or not (snapshots / sha).is_dir():
        raise not_cached
    return sha


def hash_local_weights(directory: Path) -> dict[str, str]:
    """sha256 of each weight file of a directory; refuses a directory that is no checkpoint."""
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise CheckpointRefused(f"{directory}: not a directory")
    return {name: sha256_of(directory / name) for name in checked_weight_names(directory)}
