"""The served index's bodies kept on disk, one file per (data state, encoding), so that the
second request for the same data (identity or gzip) costs a file read, not a rebuild.

A body is written while it is streamed to its first client: into a temporary file beside the
target, renamed into place only once the last byte is written (a client that goes away, or a
crash, leaves no file under the final name; `tidy` removes stale temporaries). Once a body is in
place, the files of older data states are removed.
"""

import os
import tempfile
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Names: index-<tag>.<suffix>; temporaries: .index-<tag>.<suffix>.<random>.tmp
PREFIX = "index-"
TMP_PREFIX = ".index-"
TMP_SUFFIX = ".tmp"
SUFFIXES = {"identity": "json", "gzip": "json.gz"}
# A temporary older than this belongs to a writer that died (a body takes minutes at most).
STALE_TMP_SECONDS = 6 * 3600


@dataclass
class _Temporary:
    handle: BinaryIO
    path: Path

    def write(self, data: bytes) -> None:
        self.handle.write(data)


def _discard(out: _Temporary) -> None:
    out.handle.close()
    out.path.unlink(missing_ok=True)


class IndexFiles:
    def __init__(self, directory: Path):
        self.directory = directory

    def path(self, tag: str, encoding: str) -> Path:
        return self.directory / f"{PREFIX}{tag}.{SUFFIXES[encoding]}"

    def existing(self, tag: str, encoding: str) -> Path | None:
        path = self.path(tag, encoding)
        return path if path.is_file() else None

    def tee(self, chunks: Iterator[bytes], tag: str, encoding: str) -> Generator[bytes, None, None]:
        """`chunks` passed through, and written to the file for (tag, encoding) when they all
        were. A directory that cannot be written only means no file: the stream goes on."""
        target = self.path(tag, encoding)
        out = self._open_temporary(target)
        complete = False
        try:
            for chunk in chunks:
                if out is not None:
                    try:
                        out.write(chunk)
                    except OSError:
                        _discard(out)
                        out = None
                yield chunk
            complete = True
        finally:
            if out is not None:
                if complete:
                    self._publish(out, target, tag)
                else:
                    _discard(out)

    def _open_temporary(self, target: Path):
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=TMP_PREFIX + target.name.removeprefix(PREFIX) + ".",
                suffix=TMP_SUFFIX,
                dir=self.directory,
            )
        except OSError:
            return None
        return _Temporary(os.fdopen(fd, "wb"), Path(name))

    def _publish(self, out: "_Temporary", target: Path, tag: str) -> None:
        try:
            out.handle.flush()
            os.fsync(out.handle.fileno())
            out.handle.close()
            os.replace(out.path, target)
        except OSError:
            _discard(out)
            return
        self.tidy(keep=tag)

    def tidy(self, keep: str) -> None:
        """Remove the bodies of other data states and temporaries left by dead writers."""
        now = time.time()
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return
        for entry in entries:
            try:
                if self._stale(entry, keep, now):
                    entry.unlink(missing_ok=True)
            except OSError:
                pass

    @staticmethod
    def _stale(entry: Path, keep: str, now: float) -> bool:
        name = entry.name
        if name.startswith(PREFIX):  # another data state's body
            return not name.startswith(f"{PREFIX}{keep}.")
        return (
            name.startswith(TMP_PREFIX)
            and name.endswith(TMP_SUFFIX)
            and now - entry.stat().st_mtime > STALE_TMP_SECONDS
        )
