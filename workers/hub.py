"""Where checkpoints come from: the Hugging Face Hub (through its shared cache) or a directory.

- `resolve_revision` pins a branch, tag or short sha to the full commit sha, at submission.
- `fetch_hub` checks the repository's file list before downloading anything (pickle-only
  checkpoints, missing config, size cap), then downloads only what detection reads: config,
  tokenizer and safetensors files; never a pickle (.bin/.pt/.pth), GGUF, ONNX, Flax or TF file.
- `fetch_local` applies the same checks to a directory and pins it by a content hash.

Both return the files with their sha256, so that analysis does not hash them again.
The Hub cache (HF_HUB_CACHE / HF_HOME) and the token (HF_TOKEN) are huggingface_hub's own.
"""

import json
import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from huggingface_hub import (
    HfApi,
    constants,
    get_cached_repo_tree,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from registry.errors import InvalidInput, NotFound, SwregError
from workers.checkpoint import local_revision, sha256_of
from workers.errors import CheckpointRefused

try:  # the HTTP client huggingface_hub uses (httpx2 since 2.x)
    from httpx2 import TransportError
except ImportError:  # pragma: no cover - older huggingface_hub
    from httpx import TransportError

# What detection reads. Everything else in a repository is never downloaded.
ALLOW_PATTERNS = [
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "*.model",  # sentencepiece
    "*.safetensors",
    "model.safetensors.index.json",
]
SAFETENSORS_SUFFIX = ".safetensors"
# Weights that can only be read by unpickling, which runs arbitrary code: never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
CONFIG_FILE = "config.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
DEFAULT_BRANCH = "main"

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA = re.compile(r"^[0-9a-f]{7,39}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
BYTES_PER_GB = 1e9


class HubRefused(InvalidInput):
    """The Hub (or its cache) cannot give us this model: refused at submission or at fetch."""

    permanent = True


class HubNotFound(NotFound):
    permanent = True


class FetchRefused(CheckpointRefused):
    """A checkpoint the worker must not or cannot fetch. Permanent: retrying changes nothing."""


class HubUnavailable(SwregError):
    """The Hub could not be reached and the cache cannot stand in: worth retrying later."""

    http_status = 503
    permanent = False


@dataclass(frozen=True)
class RepoFile:
    name: str
    size: int
    # Known without reading the file: the LFS sha256 (API) or a sha256-named cache blob.
    sha256: str | None = None


@dataclass
class FetchResult:
    path: Path
    # Every file fetched (name, size, sha256), sorted by name.
    files: list[dict[str, Any]] = field(default_factory=list)
    # sha256 per weight file detection reads (handed to analysis, which then hashes nothing).
    weight_sha256: dict[str, str] = field(default_factory=dict)
    # Bytes of the files selected for fetching, of those actually downloaded (not yet cached),
    # and of every file in the repository at that revision (what a full clone would move).
    selected_bytes: int = 0
    downloaded_bytes: int = 0
    repo_bytes: int = 0
    offline: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "selected_bytes": self.selected_bytes,
            "downloaded_bytes": self.downloaded_bytes,
            "repo_bytes": self.repo_bytes,
            "offline": self.offline,
        }


# --- revisions ------------------------------------------------------------------------------


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
    root = Path(cache_dir or constants.HF_HUB_CACHE).expanduser()
    return root / ("models--" + repo_id.replace("/", "--"))


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


# --- checks before fetching -----------------------------------------------------------------


def is_selected(name: str) -> bool:
    return any(fnmatch(name, pattern) for pattern in ALLOW_PATTERNS)


def shard_names(index_file: Path) -> list[str]:
    """The weight files a safetensors shard index names."""
    try:
        return sorted(set(json.loads(index_file.read_text())["weight_map"].values()))
    except (OSError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise FetchRefused(f"{index_file}: unreadable shard index ({exc})") from None


def select_files(listing: list[RepoFile], shards: list[str] | None) -> list[RepoFile]:
    """What detection reads: the top-level config and tokenizer files, and the weights: the
    shards the index names when there is one (a repository may also carry a consolidated copy of
    the same weights, e.g. Mistral's consolidated.safetensors next to its shards), else the
    top-level safetensors files (the rule of workers.checkpoint)."""

    def wanted(name: str) -> bool:
        if "/" in name:
            return False
        if name.endswith(SAFETENSORS_SUFFIX):
            return shards is None or name in shards
        return is_selected(name)

    return [f for f in listing if wanted(f.name)]


def check_listing(
    files: list[RepoFile], selected: list[RepoFile], *, max_bytes: int, what: str
) -> None:
    """Refuse, before any download, what the worker must not load or may not fetch."""
    names = [f.name for f in files]
    if not any(n.endswith(SAFETENSORS_SUFFIX) for n in names):
        if any(n.endswith(PICKLE_SUFFIXES) for n in names):
            raise FetchRefused(f"{what}: pickle-only checkpoint (never unpickled)")
        raise FetchRefused(f"{what}: no safetensors weight files")
    if CONFIG_FILE not in names:
        raise FetchRefused(f"{what}: no {CONFIG_FILE}")
    selected_bytes = sum(f.size for f in selected)
    if selected_bytes > max_bytes:
        raise FetchRefused(
            f"{what}: checkpoint is {gigabytes(selected_bytes)}, "
            f"over the cap of {gigabytes(max_bytes)}"
        )


def gigabytes(size: int) -> str:
    # Three significant digits: "13.5 GB", "140 GB", and still distinct for tiny test models.
    return f"{size / BYTES_PER_GB:.3g} GB"


# --- the Hub --------------------------------------------------------------------------------


def _remote_listing(repo_id: str, sha: str, token: str | None) -> list[RepoFile]:
    info = HfApi(token=token).model_info(repo_id, revision=sha, files_metadata=True)
    return [
        RepoFile(
            name=s.rfilename,
            size=int(s.size or (s.lfs.size if s.lfs else 0) or 0),
            sha256=s.lfs.sha256 if s.lfs else None,
        )
        for s in info.siblings or []
    ]


def _cached_listing(repo_id: str, sha: str, cache_dir: Path | None) -> list[RepoFile]:
    """The repository's files from the cache: the tree listing huggingface_hub stored at
    download time when there is one (it names files that were not downloaded), else the files
    of the snapshot itself."""
    snapshot = repo_cache_dir(repo_id, cache_dir) / "snapshots" / sha
    if not snapshot.is_dir():
        raise HubRefused(
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
) -> FetchResult:
    """Download (or find in the cache) what detection reads of repo_id at commit sha."""
    if not COMMIT_SHA.match(sha):
        raise FetchRefused(f"{repo_id}: revision {sha!r} is not a full commit sha")
    what = f"{repo_id}@{sha[:12]}"
    offline = False
    try:
        listing = _remote_listing(repo_id, sha, token)
    except GatedRepoError:
        raise HubRefused(f"{repo_id} is a gated repository: set HF_TOKEN") from None
    except RevisionNotFoundError:
        raise HubNotFound(f"revision {sha} no longer exists in {repo_id}") from None
    except RepositoryNotFoundError:
        raise HubNotFound(f"repository {repo_id} no longer exists on the Hub") from None
    except (OfflineModeIsEnabled, TransportError):
        listing = _cached_listing(repo_id, sha, cache_dir)
        offline = True
    shards = None
    if any(f.name == SAFETENSORS_INDEX for f in listing):
        # The index first (a few KB): it says which of the repository's weight files to fetch.
        index = _download_one(repo_id, sha, SAFETENSORS_INDEX, cache_dir, token, what)
        shards = shard_names(index)
    selected = select_files(listing, shards)
    check_listing(listing, selected, max_bytes=max_bytes, what=what)

    blobs = repo_cache_dir(repo_id, cache_dir) / "blobs"
    snapshot = repo_cache_dir(repo_id, cache_dir) / "snapshots" / sha
    # What is already cached costs nothing; the rest is what this fetch downloads.
    downloaded = sum(
        f.size
        for f in selected
        if not ((f.sha256 and (blobs / f.sha256).is_file()) or (snapshot / f.name).is_file())
    )
    try:
        path = Path(
            snapshot_download(
                repo_id,
                revision=sha,
                # Exact names (chosen from ALLOW_PATTERNS above), never a pickle or other format.
                allow_patterns=[f.name for f in selected],
                cache_dir=cache_dir,
                token=token,
            )
        )
    except LocalEntryNotFoundError as exc:
        raise HubUnavailable(f"{what}: {str(exc).splitlines()[0]}") from None
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise HubRefused(f"{what}: {str(exc).splitlines()[0]}") from None

    known = {f.name: f for f in listing}
    records = []
    for name in sorted(f.name for f in selected):
        local = path / name
        if not local.is_file():
            raise HubUnavailable(f"{what}: {name} is missing from the fetched snapshot")
        digest = known[name].sha256 or _blob_sha256(local) or sha256_of(local)
        records.append({"name": name, "size": local.stat().st_size, "sha256": digest})
    by_name = {r["name"]: r["sha256"] for r in records}
    return FetchResult(
        path=path,
        files=records,
        weight_sha256={n: by_name[n] for n in weight_file_names(path) if n in by_name},
        selected_bytes=sum(f.size for f in selected),
        downloaded_bytes=0 if offline else downloaded,
        repo_bytes=sum(f.size for f in listing),
        offline=offline,
    )


def _download_one(
    repo_id: str, sha: str, filename: str, cache_dir: Path | None, token: str | None, what: str
) -> Path:
    try:
        return Path(
            hf_hub_download(repo_id, filename, revision=sha, cache_dir=cache_dir, token=token)
        )
    except LocalEntryNotFoundError as exc:
        raise HubUnavailable(f"{what}: {str(exc).splitlines()[0]}") from None


# --- local directories ----------------------------------------------------------------------


def weight_file_names(directory: Path) -> list[str]:
    """The safetensors files detection reads: the shard index's files, else the top-level ones
    (the rule of workers.checkpoint)."""
    index = directory / SAFETENSORS_INDEX
    if index.is_file():
        return shard_names(index)
    return sorted(p.name for p in directory.glob(f"*{SAFETENSORS_SUFFIX}"))


def hash_local_weights(directory: Path) -> dict[str, str]:
    """sha256 of each weight file of a directory; refuses a directory with none."""
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise FetchRefused(f"{directory}: not a directory")
    names = weight_file_names(directory)
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise FetchRefused(f"{directory}: shard index names missing files: {', '.join(missing)}")
    if not names:
        # The most specific reason first (pickle-only, no config), else this one.
        check_listing(local_listing(directory), [], max_bytes=0, what=str(directory))
        raise FetchRefused(f"{directory}: no top-level safetensors weight files")
    return {name: sha256_of(directory / name) for name in names}


def local_listing(directory: Path) -> list[RepoFile]:
    return sorted(
        (
            RepoFile(p.relative_to(directory).as_posix(), p.stat().st_size)
            for p in directory.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        ),
        key=lambda f: f.name,
    )


def fetch_local(
    directory: Path, *, max_bytes: int, expected_revision: str | None = None
) -> tuple[FetchResult, str]:
    """Check and hash a local checkpoint directory; returns it with its content revision.

    With `expected_revision` (the one pinned at submission), a directory whose weights changed
    since is refused: its results would be recorded under the wrong revision.
    """
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise FetchRefused(f"{directory}: not a directory")
    listing = local_listing(directory)
    index = directory / SAFETENSORS_INDEX
    selected = select_files(listing, shard_names(index) if index.is_file() else None)
    check_listing(listing, selected, max_bytes=max_bytes, what=str(directory))
    weights = hash_local_weights(directory)
    records = [
        {
            "name": f.name,
            "size": f.size,
            "sha256": weights.get(f.name) or sha256_of(directory / f.name),
        }
        for f in selected
    ]
    result = FetchResult(
        path=directory,
        files=records,
        weight_sha256=weights,
        selected_bytes=sum(f.size for f in selected),
        downloaded_bytes=0,
        repo_bytes=sum(f.size for f in listing),
    )
    revision = local_revision(weights)
    if expected_revision is not None and revision != expected_revision:
        raise FetchRefused(
            f"{directory}: weight files changed since submission ({expected_revision} → {revision})"
        )
    return result, revision
