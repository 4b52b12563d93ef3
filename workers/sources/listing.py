"""A repository's (or a directory's) files, which of them a worker fetches, and the checks made
on the listing before anything is downloaded."""

from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from workers.science.checkpoint import (
    refuse_oversized_metadata,
    refuse_unusable_listing,
    weight_file_names,
)
from workers.science.errors import CheckpointRefused

# What detection reads besides the weights. Everything else in a repository is never
# downloaded: no pickle (.bin/.pt/.pth), GGUF, ONNX, Flax or TF file.
METADATA_PATTERNS = [
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "*.model",  # sentencepiece
    "model.safetensors.index.json",
]
BYTES_PER_GB = 1e9


@dataclass(frozen=True)
class RepoFile:
    name: str
    size: int
    # Known without reading the file: the LFS sha256 (API) or a sha256-named cache blob.
    sha256: str | None = None
    # The git blob id the Hub lists for every file; huggingface_hub names the cache blob of a
    # file that is not in LFS by it.
    blob_id: str | None = None


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
    # The base model the model card names (workers.sources.model_card); None when it names none.
    base_model: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "selected_bytes": self.selected_bytes,
            "downloaded_bytes": self.downloaded_bytes,
            "repo_bytes": self.repo_bytes,
            "offline": self.offline,
        }


def select_files(listing: list[RepoFile], shards: list[str] | None) -> list[RepoFile]:
    """What detection reads: the top-level config and tokenizer files, and the weight files
    of the checkpoint rule."""
    weights = set(weight_file_names([f.name for f in listing], shards))
    return [
        f
        for f in listing
        if f.name in weights
        or ("/" not in f.name and any(fnmatch(f.name, p) for p in METADATA_PATTERNS))
    ]


def check_listing(
    files: list[RepoFile], selected: list[RepoFile], *, max_bytes: int, what: str
) -> None:
    """Refuse, before any download, what the worker must not load or may not fetch."""
    refuse_unusable_listing([f.name for f in files], what)
    # Config, tokenizer and shard index over their caps: refused from their listed sizes.
    refuse_oversized_metadata(((f.name, f.size) for f in selected), what)
    selected_bytes = sum(f.size for f in selected)
    if selected_bytes > max_bytes:
        raise CheckpointRefused(
            f"{what}: checkpoint is {gigabytes(selected_bytes)}, "
            f"over the cap of {gigabytes(max_bytes)}"
        )


def gigabytes(size: int) -> str:
    # Three significant digits: "13.5 GB", "140 GB", and still distinct for tiny test models.
    return f"{size / BYTES_PER_GB:.3g} GB"
