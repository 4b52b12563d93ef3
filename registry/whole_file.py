"""A file written whole or not at all: written beside its place under a name of its own, then
renamed over it, so a reader sees the old file or the new one, never half; on any failure the
partial file is removed and the error goes on to the caller (who says it in its own words)."""

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_whole(path: Path, chunks: Iterable[str]) -> None:
    """Write the text of `chunks` to `path` (UTF-8, newlines as given)."""
    # A unique name beside the target (the same folder: the rename stays on one file system),
    # so that two writers at once never write into each other's partial file.
    handle = tempfile.NamedTemporaryFile(
        "w",
        encoding="utf-8",
        newline="",
        dir=path.parent,
        prefix=f"{path.name}.",
        suffix=".partial",
        delete=False,
    )
    try:
        with handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
