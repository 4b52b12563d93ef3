"""A local checkpoint directory, checked like a Hub repository and pinned by its content hash."""

from pathlib import Path

from workers.science.checkpoint import (
    SAFETENSORS_INDEX,
    SAFETENSORS_SUFFIX,
    metadata_kind,
    read_shard_index,
    refuse_outside,
    sha256_of,
)
from workers.science.errors import CheckpointRefused
from workers.sources.listing import FetchResult, RepoFile, check_listing, select_files
from workers.sources.model_card import listed_card, read_base_model
from workers.sources.pinning import hash_local_weights, local_revision


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
        raise CheckpointRefused(f"{directory}: not a directory")
    # Weights and parsed files linking out of the folder: refused by name, before the listing
    # (which sees only links whose target exists) could tell the two apart.
    refuse_outside(
        directory,
        [
            p.name
            for p in directory.iterdir()
            if p.name.endswith(SAFETENSORS_SUFFIX) or metadata_kind(p.name)
        ],
    )
    listing = local_listing(directory)
    index = directory / SAFETENSORS_INDEX
    selected = select_files(listing, read_shard_index(index) if index.is_file() else None)
    check_listing(listing, selected, max_bytes=max_bytes, what=str(directory))
    # The model card too, when it is small: the base model it names (workers.sources.model_card).
    # A card linking out of the folder is neither read nor hashed.
    card = listed_card(listing)
    if card is not None and not (directory / card.name).resolve().is_relative_to(directory):
        card = None
    base_model = read_base_model(directory / card.name) if card is not None else None
    if card is not None:
        selected = [*selected, card]
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
        base_model=base_model,
        path=directory,
        files=records,
        weight_sha256=weights,
        selected_bytes=sum(f.size for f in selected),
        downloaded_bytes=0,
        repo_bytes=sum(f.size for f in listing),
    )
    revision = local_revision(weights)
    if expected_revision is not None and revision != expected_revision:
        raise CheckpointRefused(
            f"{directory}: weight files changed since submission ({expected_revision} → {revision})"
        )
    return result, revision
