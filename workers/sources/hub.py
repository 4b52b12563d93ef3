"""Fetching what detection reads of a Hub repository at a pinned commit, through
huggingface_hub's shared cache (HF_HUB_CACHE / HF_HOME; the token is HF_TOKEN).

The repository's file list is checked before anything is downloaded (pickle-only checkpoints,
missing config, the size cap), except a sharded checkpoint's shard index (a few KB), fetched
first because it says which shards count; then only config, tokenizer and the weight files are
fetched, with their sha256 (from the LFS metadata or the cache's blob names), so that analysis
does not hash them again.
"""

import os
import re
from pathlib import Path
from typing import Any

from httpx2 import TransportError  # huggingface_hub's HTTP client
from huggingface_hub import (
    HfApi,
    get_cached_repo_tree,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from workers.science.checkpoint import (
    SAFETENSORS_INDEX,
    read_shard_index,
    refuse_oversized_metadata,
    sha256_of,
    weight_file_names,
)
from workers.science.errors import CheckpointRefused
from workers.sources import hub_client
from workers.sources.cache_budget import CacheBudget
from workers.sources.errors import HubNotFound, HubRefused, HubUnavailable
from workers.sources.listing import FetchResult, RepoFile, check_listing, select_files
from workers.sources.model_card import listed_card, read_base_model
from workers.sources.pinning import COMMIT_SHA, repo_cache_dir

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _remote_listing(repo_id: str, sha: str, token: str | None) -> list[RepoFile]:
    info = HfApi(token=token).model_info(
        repo_id, revision=sha, files_metadata=True, timeout=hub_client.current().read
    )
    return [
        RepoFile(
            name=s.rfilename,
            size=int(s.size or (s.lfs.size if s.lfs else 0) or 0),
            sha256=s.lfs.sha256 if s.lfs else None,
            blob_id=s.blob_id,
        )
        for s in info.siblings or []
    ]


def _cached_listing(
    repo_id: str, sha: str, cache_dir: Path | None, *, offline: bool
) -> list[RepoFile]:
    """The repository's files from the cache: the tree listing huggingface_hub stored at
    download time when there is one (it names files that were not downloaded), else the files
    of the snapshot itself. A commit the cache lacks is refused in offline mode (a setting) and
    HubUnavailable (worth retrying) when the Hub is unreachable."""
    snapshot = repo_cache_dir(repo_id, cache_dir) / "snapshots" / sha
    if not snapshot.is_dir():
        if offline:
            raise HubRefused(f"{repo_id}@{sha} is not in the local Hub cache (offline mode)")
        raise HubUnavailable(
            f"{repo_id}@{sha} is not in the local Hub cache and the Hub is unreachable"
        )
    present = {p.relative_to(snapshot).as_posix(): p for p in snapshot.rglob("*") if p.is_file()}
    files = {name: RepoFile(name, p.stat().st_size, _blob_sha256(p)) for name, p in present.items()}
    try:
        tree = get_cached_repo_tree(repo_id, revision=sha, cache_dir=cache_dir)
    except CachedRepoTreeNotFoundError:
        tree = []
    for entry in tree:
        files.setdefault(entry.path, RepoFile(entry.path, int(entry.size or 0)))
    return sorted(files.values(), key=lambda f: f.name)


def _blob_sha256(path: Path) -> str | None:
    """huggingface_hub names an LFS blob by its sha256 (64 hex); small files by git sha1."""
    if path.is_symlink():
        name = Path(os.readlink(path)).name
        if SHA256_HEX.match(name):
            return name
    return None


def fetch_hub(
    repo_id: str,
    sha: str,
    *,
    max_bytes: int,
    cache_dir: Path | None = None,
    token: str | None = None,
    budget: CacheBudget | None = None,
) -> FetchResult:
    """Download (or find in the cache) what detection reads of repo_id at commit sha. With a
    `budget`, room is made for the download first (or it is refused:
    workers.sources.cache_budget)."""
    if not COMMIT_SHA.match(sha):
        raise CheckpointRefused(f"{repo_id}: revision {sha!r} is not a full commit sha")
    what = f"{repo_id}@{sha[:12]}"
    hub_client.ensure_configured()
    offline = False
    try:
        listing = _remote_listing(repo_id, sha, token)
    except GatedRepoError:
        raise HubRefused(f"{repo_id} is a gated repository: set HF_TOKEN") from None
    except RevisionNotFoundError:
        raise HubNotFound(f"revision {sha} no longer exists in {repo_id}") from None
    except RepositoryNotFoundError:
        raise HubNotFound(f"repository {repo_id} no longer exists on the Hub") from None
    except OfflineModeIsEnabled:
        listing = _cached_listing(repo_id, sha, cache_dir, offline=True)
        offline = True
    except TransportError:
        listing = _cached_listing(repo_id, sha, cache_dir, offline=False)
        offline = True
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status is None or (status < 500 and status != 429):
            raise HubRefused(f"the Hub refused {what}: {str(exc).splitlines()[0]}") from None
        listing = _cached_listing(repo_id, sha, cache_dir, offline=False)
        offline = True
    blobs = repo_cache_dir(repo_id, cache_dir) / "blobs"
    # What is cached before this fetch downloads anything (the shard index included) costs
    # nothing, whichever commit brought it: huggingface_hub keeps one blob per file content,
    # named by the LFS sha256 or, for any other file, by its git blob id. The rest of what the
    # fetch selects is what it downloads.
    was_cached = {
        f.name
        for f in listing
        if any((blobs / blob).is_file() for blob in (f.sha256, f.blob_id) if blob)
    }
    shards = None
    if any(f.name == SAFETENSORS_INDEX for f in listing):
        # Its size cap from the listing, before a byte of it is downloaded.
        refuse_oversized_metadata(
            ((f.name, f.size) for f in listing if f.name == SAFETENSORS_INDEX), what
        )
        # The index first (a few KB): it says which of the repository's weight files to fetch.
        index = _download_one(repo_id, sha, SAFETENSORS_INDEX, cache_dir, token, what, offline)
        shards = read_shard_index(index)
    selected = select_files(listing, shards)
    selected_weights = weight_file_names([f.name for f in listing], shards)
    check_listing(listing, selected, max_bytes=max_bytes, what=what)
    # The model card too, when it is small: the base model it names (workers.sources.model_card).
    card = listed_card(listing)
    if card is not None:
        selected = [*selected, card]

    downloaded = sum(f.size for f in selected if f.name not in was_cached)
    if budget is not None:
        repo_dir = repo_cache_dir(repo_id, cache_dir)
        budget.make_room(repo_dir, 0 if offline else downloaded, what)
        budget.touch(repo_dir)
    try:
        path = Path(
            snapshot_download(
                repo_id,
                revision=sha,
                # Exact names (chosen by select_files), never a pickle or other format.
                allow_patterns=[f.name for f in selected],
                cache_dir=cache_dir,
                token=token,
                # The listing already found the Hub unreachable: do not wait for it again.
                local_files_only=offline,
            )
        )
    except LocalEntryNotFoundError as exc:
        raise HubUnavailable(f"{what}: {str(exc).splitlines()[0]}") from None
    except TransportError as exc:
        # A stalled download (hub_client.HubStalled) or a Hub gone mid-fetch: worth retrying.
        raise HubUnavailable(f"{what}: fetch interrupted: {str(exc).splitlines()[0]}") from None
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise HubRefused(f"{what}: {str(exc).splitlines()[0]}") from None

    known = {f.name: f for f in listing}
    records: list[dict[str, Any]] = []
    for name in sorted(f.name for f in selected):
        local = path / name
        if card is not None and name == card.name and not local.is_file():
            # An optional file: a cache filled before cards were read may lack it offline.
            card = None
            continue
        if not local.is_file():
            raise HubUnavailable(f"{what}: {name} is missing from the fetched snapshot")
        digest = known[name].sha256 or _blob_sha256(local) or sha256_of(local)
        records.append({"name": name, "size": local.stat().st_size, "sha256": digest})
    by_name: dict[str, str] = {r["name"]: r["sha256"] for r in records}
    return FetchResult(
        base_model=read_base_model(path / card.name) if card is not None else None,
        path=path,
        files=records,
        weight_sha256={n: by_name[n] for n in selected_weights if n in by_name},
        selected_bytes=sum(known[r["name"]].size for r in records),
        downloaded_bytes=0 if offline else downloaded,
        repo_bytes=sum(f.size for f in listing),
        offline=offline,
    )


def _download_one(
    repo_id: str,
    sha: str,
    filename: str,
    cache_dir: Path | None,
    token: str | None,
    what: str,
    offline: bool,
) -> Path:
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=sha,
                cache_dir=cache_dir,
                token=token,
                local_files_only=offline,
            )
        )
    except LocalEntryNotFoundError as exc:
        raise HubUnavailable(f"{what}: {str(exc).splitlines()[0]}") from None
    except TransportError as exc:
        raise HubUnavailable(f"{what}: fetch interrupted: {str(exc).splitlines()[0]}") from None
