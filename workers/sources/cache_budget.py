"""A worker's Hub cache kept within a byte budget (setting `worker_cache_budget_bytes`).

huggingface_hub's cache holds one folder per repository (`models--org--name`, with `blobs`,
`snapshots` and `refs`). The budget counts every file in the cache (blobs, and downloads under
way: `*.incomplete`), never a symlink twice. A job's fetch first makes room for what it will
download, evicting whole repositories in least-recently-used order (the time a job last used a
repository is the mtime of a marker file in its folder); a repository whose download alone is
over the budget is refused before any byte of it is fetched. After each job the cache is brought
back within the budget.

Never half a cache: a repository is evicted by renaming its folder out of the cache's namespace
(one atomic rename) and only then deleting it, so a crash leaves either the whole repository or
a folder huggingface_hub never reads; huggingface_hub itself downloads into `*.incomplete` files
renamed into place. `recover()` (at worker start) removes both kinds of leftovers.
"""

import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from workers.science.errors import CheckpointRefused

log = logging.getLogger("swreg.worker")

REPO_PREFIX = "models--"
# When a job last used a repository (its mtime), inside the repository's folder.
MARKER = ".swreg-last-used"
# An evicted repository's folder while it is being deleted.
TRASH_PREFIX = ".swreg-evicting-"
INCOMPLETE_SUFFIX = ".incomplete"


def _tree_bytes(root: Path) -> int:
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                try:
                    total += os.stat(path).st_size
                except FileNotFoundError:
                    pass  # removed meanwhile
    return total


@dataclass
class CacheBudget:
    cache_dir: Path
    limit: int

    def size(self) -> int:
        """Bytes the cache holds now."""
        return _tree_bytes(self.cache_dir) if self.cache_dir.is_dir() else 0

    def touch(self, repo_dir: Path) -> None:
        """Mark the repository as used now (most recently used: evicted last)."""
        repo_dir.mkdir(parents=True, exist_ok=True)
        marker = repo_dir / MARKER
        marker.touch()
        now = time.time()
        os.utime(marker, (now, now))

    def _last_used(self, repo_dir: Path) -> float:
        try:
            return (repo_dir / MARKER).stat().st_mtime
        except FileNotFoundError:
            return repo_dir.stat().st_mtime  # fetched before budgets: as old as its folder

    def repositories(self) -> list[Path]:
        """The cached repositories, least recently used first."""
        if not self.cache_dir.is_dir():
            return []
        repos = [
            p for p in self.cache_dir.iterdir() if p.is_dir() and p.name.startswith(REPO_PREFIX)
        ]
        return sorted(repos, key=lambda p: (self._last_used(p), p.name))

    def make_room(self, repo_dir: Path, needed: int, what: str) -> None:
        """Evict least-recently-used repositories (never `repo_dir`) until `needed` more bytes
        fit; CheckpointRefused when they cannot fit even in an empty cache."""
        if needed > self.limit:
            raise CheckpointRefused(
                f"{what}: its download ({needed:,} bytes) is over this worker's Hub cache budget "
                f"({self.limit:,} bytes, SWREG_WORKER_CACHE_BUDGET_BYTES)"
            )
        self._evict_until(self.limit - needed, keep=repo_dir)
        if self.size() + needed > self.limit:
            raise CheckpointRefused(
                f"{what}: its download ({needed:,} bytes) does not fit this worker's Hub cache "
                f"budget ({self.limit:,} bytes) beside what the repository holds already"
            )

    def enforce(self, keep: Path | None = None) -> None:
        """Evict least-recently-used repositories until the cache is within its budget."""
        self._evict_until(self.limit, keep=keep)

    def _evict_until(self, target: int, keep: Path | None) -> None:
        size = self.size()
        for repo_dir in self.repositories():
            if size <= target:
                return
            if keep is not None and repo_dir.resolve() == keep.resolve():
                continue
            freed = _tree_bytes(repo_dir)
            self.evict(repo_dir)
            size -= freed
            log.info(
                "Hub cache: evicted %s (%d bytes) to stay within %d bytes",
                repo_dir.name,
                freed,
                self.limit,
            )

    def evict(self, repo_dir: Path) -> None:
        trash = self.cache_dir / f"{TRASH_PREFIX}{repo_dir.name}-{uuid.uuid4().hex[:8]}"
        os.replace(repo_dir, trash)  # atomic: the repository is gone from the cache at once
        shutil.rmtree(trash, ignore_errors=True)

    def recover(self) -> None:
        """Remove what a crash can leave: folders of evictions cut short and downloads that
        never finished."""
        if not self.cache_dir.is_dir():
            return
        for entry in self.cache_dir.iterdir():
            if entry.name.startswith(TRASH_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
        for partial in self.cache_dir.glob(f"{REPO_PREFIX}*/blobs/*{INCOMPLETE_SUFFIX}"):
            partial.unlink(missing_ok=True)
