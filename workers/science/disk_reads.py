"""Bytes a process reads from storage, by the kernel's own I/O accounting (Linux).

The naive approach loads a model with `from_pretrained`, which memory-maps the safetensors
files: its reads are page faults, which no read counter in Python sees. The kernel counts them:
`read_bytes` in /proc/self/io is what the process (all its threads) caused to be fetched from
the storage layer, readahead included. Pages already in the page cache cost no read and are not
counted, so a measurement first evicts the files of interest from the page cache.

What such a figure is: the bytes this process read from disk while it ran, mostly those files;
anything else it read cold meanwhile counts too, and a page that another process keeps mapped
cannot be evicted (its read is then not counted). On a filesystem with no storage behind it
(tmpfs) it is 0.
"""

import os
from pathlib import Path

PROC_IO = Path("/proc/self/io")


def evict_from_page_cache(files: list[Path]) -> None:
    """Drop the files' pages from the page cache, so that the next read of them comes from disk
    (dirty pages are written back first: only clean pages can be dropped)."""
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_bytes_so_far() -> int:
    """Bytes this process has read from storage since it started (`read_bytes` of
    /proc/self/io)."""
    for line in PROC_IO.read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "read_bytes":
            return int(value)
    raise OSError(f"{PROC_IO} has no read_bytes line")
