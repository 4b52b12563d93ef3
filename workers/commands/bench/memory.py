"""Memory for `swreg bench`: the cap a child process runs under (cgroup v2, cgroup v1 or
RLIMIT_AS) and its peak resident memory, polled from /proc while it runs."""

import os
import resource
import threading
from pathlib import Path
from typing import ClassVar

GIB = 1024**3
MIB = 1024**2
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_V1_MEMORY = CGROUP_ROOT / "memory"


def _cgroup_v2_memory() -> bool:
    """The unified (v2) hierarchy is mounted at /sys/fs/cgroup and offers the memory controller."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    return controllers.is_file() and "memory" in controllers.read_text().split()


class MemoryCap:
    """Run child processes under a memory limit on their resident memory: a cgroup-v2 memory
    cgroup (memory.max) where the unified hierarchy has the memory controller, else a cgroup-v1
    memory cgroup (memory.limit_in_bytes), both when this process may create one (root on the
    CI and development machines). Both also count the page cache of the files read, which the
    kernel reclaims under the limit. Failing both, RLIMIT_AS, which limits address space, not
    resident memory (mappings that are never touched count), and is labelled so."""

    LABELS: ClassVar[dict[str, str]] = {
        "cgroup-v2": "cgroup v2 memory.max",
        "cgroup-v1": "cgroup v1 memory.limit_in_bytes",
        "rlimit-as": "RLIMIT_AS (address space, not resident memory)",
    }

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.cgroup: Path | None = None
        self.kind = "none"

    @property
    def label(self) -> str:
        return self.LABELS.get(self.kind, self.kind)

    def _make(self, root: Path, files: dict[str, str]) -> bool:
        candidate = root / f"swreg-bench-{os.getpid()}"
        try:
            candidate.mkdir()
            for name, value in files.items():
                if (candidate / name).exists():
                    (candidate / name).write_text(value)
            self.cgroup = candidate
            return True
        except OSError:
            if candidate.exists():
                candidate.rmdir()
            return False

    def __enter__(self) -> "MemoryCap":
        limit = str(self.limit)
        if _cgroup_v2_memory() and self._make(
            CGROUP_ROOT, {"memory.max": limit, "memory.swap.max": "0"}
        ):
            self.kind = "cgroup-v2"
        # Swap counted too where the kernel accounts it, so the cap cannot be dodged by swapping.
        elif self._make(
            CGROUP_V1_MEMORY, {"memory.limit_in_bytes": limit, "memory.memsw.limit_in_bytes": limit}
        ):
            self.kind = "cgroup-v1"
        else:
            self.kind = "rlimit-as"
        return self

    def preexec(self) -> None:  # runs in the child, before exec
        if self.cgroup is not None:
            (self.cgroup / "cgroup.procs").write_text(str(os.getpid()))
        else:
            resource.setrlimit(resource.RLIMIT_AS, (self.limit, self.limit))

    def peak_bytes(self) -> int | None:
        """The cgroup's peak charge (resident memory plus page cache), where the kernel keeps it."""
        if self.cgroup is None:
            return None
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            if (self.cgroup / name).is_file():
                return int((self.cgroup / name).read_text())
        return None

    def __exit__(self, *exc) -> None:
        if self.cgroup is not None:
            try:
                self.cgroup.rmdir()
            except OSError:
                pass


PEAK_POLL_SECONDS = 0.02


def _high_water_mark(pid: int) -> int | None:
    """VmHWM of a running process, in bytes: the peak resident memory of its own address
    space since its last exec (None once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def watch_peak(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        value = _high_water_mark(pid)
        if value is None:
            return
        peak[0] = max(peak[0], value)
        stop.wait(PEAK_POLL_SECONDS)
