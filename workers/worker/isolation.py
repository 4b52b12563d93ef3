"""Each analysis in a child process of its own, under a memory limit: no model takes the host.

The worker (the parent) keeps the lease, the heartbeat and every database write; the child
runs the analysis with its memory capped (`SWREG_WORKER_MEMORY_LIMIT_BYTES`; default three
quarters of the machine's memory), reports progress over a pipe, and hands back the result.

The cap is RLIMIT_DATA, which counts what the process allocates (its heap and private writable
mappings: tensors, activations), not the libraries it maps or address space it only reserves:
RLIMIT_AS would count torch's and CUDA's reservations (CUDA reserves more address space than a
machine has memory) and refuse a GPU worker at start. What the model does to the child stays
in the child:

- an allocation past the limit fails inside the child (MemoryError, or torch's allocator error)
  instead of waking the kernel's OOM killer, which may pick PostgreSQL or the API as victim: the
  job fails at once with AnalysisOutOfMemory, a permanent refusal;
- a child that dies (killed, crashed) fails the job with AnalysisDied, permanent too: the same
  model would do it again; the worker itself lives on and takes the next job;
- any other error raised by the analysis is the model's doing (the worker's own failures happen
  in the parent): AnalysisFailed, permanent, with its one line.

Children are forked from a forkserver that has imported torch and transformers once (started
when the worker starts), not from the worker: forking a process whose OpenMP pool has run
hangs the child, and each job would otherwise pay seconds of imports. The function a child runs
and its arguments travel by pickle (a module-level function, by reference).

The child's peak memory (VmHWM) is sampled while it runs and reported with its answer.
"""

import ctypes
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.contract.errors import SwregError
from workers.science import limits as science_limits
from workers.science.errors import CheckpointRefused

# What analyses import, loaded once in the forkserver (workers/worker/preload.py); `__main__`:
# the worker's own main module (a child would otherwise import it again, for each job).
PRELOAD = ["__main__", "workers.worker.preload"]
# The default limit: the machine's memory less a quarter for the database, the API and the OS.
HOST_MEMORY_SHARE = 0.75
POLL_SECONDS = 0.2
# torch's words for an allocation that failed (its allocator raises RuntimeError), and Python's
# when the limit leaves no room for a thread's stack.
ALLOCATION_FAILED = (
    "can't allocate memory",
    "DefaultCPUAllocator",
    "std::bad_alloc",
    "can't start new thread",
    "Cannot allocate memory",  # strerror(ENOMEM), e.g. torch mapping a file privately
)
GB = 1e9
PR_SET_PDEATHSIG = 1  # prctl(2)


class AnalysisOutOfMemory(CheckpointRefused):
    """The analysis needs more memory than the worker may give it."""


class AnalysisDied(CheckpointRefused):
    """The analysis process died without an answer (killed or crashed)."""


class AnalysisFailed(CheckpointRefused):
    """The analysis raised an error of the model's making."""


@dataclass
class Outcome:
    value: Any
    peak_bytes: int


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(setting: int) -> int:
    """The child's RLIMIT_DATA: the setting, or HOST_MEMORY_SHARE of this machine's memory."""
    return setting or int(host_memory_bytes() * HOST_MEMORY_SHARE)


def _context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _nothing(*, progress: Callable[[str, int, int], None]) -> None:
    return None


def warm_up() -> None:
    """Start the forkserver now and wait until it has imported what analyses use (seconds),
    so that no job pays it during its lease."""
    run_isolated(_nothing, limit=memory_limit(0), progress=lambda *report: None)


def _peak_of(pid: int) -> int:
    """VmHWM (the peak resident set) of a live process, in bytes; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == 12:  # ENOMEM (a thread, an mmap)
        return True
    return isinstance(exc, RuntimeError) and any(w in str(exc) for w in ALLOCATION_FAILED)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _die_with_parent() -> None:
    """SIGKILL this process when its parent (the forkserver, which exits when the worker does)
    dies: a killed worker leaves no analysis running on."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child ends at its next progress report
        pass


def _child(
    send, limit: int, caps: science_limits.Limits, target: Callable, args: tuple, kwargs: dict
) -> None:
    _die_with_parent()
    # Signals are the worker's to handle: it ends this process when it has to.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    science_limits.configure(**vars(caps))  # the worker's caps, not the defaults

    def progress(stage: str, done: int, total: int) -> None:
        send.send(("progress", stage, done, total))

    try:
        value = target(*args, progress=progress, **kwargs)
        answer = ("done", value)
    except BaseException as exc:  # everything goes back to the parent as one answer
        if _out_of_memory(exc):
            answer = ("out_of_memory", _one_line(exc))
        elif isinstance(exc, SwregError):
            answer = ("refused", exc)
        else:
            answer = ("failed", _one_line(exc))
    try:
        send.send((*answer, _peak_of(os.getpid())))
    except Exception as exc:  # an unpicklable result or error: still one line
        send.send(("failed", f"the analysis's answer cannot be sent back: {_one_line(exc)}", 0))
    send.close()


def run_isolated(
    target: Callable,
    *args: Any,
    limit: int,
    progress: Callable[[str, int, int], None],
    **kwargs: Any,
) -> Outcome:
    """`target(*args, progress=..., **kwargs)` in a child whose allocations may reach `limit`
    bytes (RLIMIT_DATA); its progress reports are handed to `progress` here (which may raise, e.g.
    LeaseLost: the child is then killed). Raises the child's refusal, AnalysisOutOfMemory,
    AnalysisFailed or AnalysisDied, each with the child's `peak_bytes`."""
    context = _context()
    receive, send = context.Pipe(duplex=False)
    caps = science_limits.current()
    process = context.Process(
        target=_child, args=(send, limit, caps, target, args, kwargs), name="swreg-analysis"
    )
    process.start()
    send.close()
    peak = 0
    limit_text = f"{limit / GB:.3g} GB"
    try:
        while True:
            if not receive.poll(POLL_SECONDS):
                peak = max(peak, _peak_of(process.pid))
                if not process.is_alive() and not receive.poll(0):
                    break
                continue
            try:
                kind, *payload = receive.recv()
            except EOFError:
                break
            if kind == "progress":
                progress(*payload)
                continue
            value, child_peak = payload
            peak = max(peak, child_peak)
            if kind == "done":
                return Outcome(value, peak)
            if kind == "refused":
                error = value
            elif kind == "out_of_memory":
                error = AnalysisOutOfMemory(
                    f"the analysis needs more memory than the worker's limit of {limit_text} "
                    f"(resident peak {peak / GB:.3g} GB; {value})"
                )
            else:
                error = AnalysisFailed(f"the analysis failed: {value}")
            setattr(error, "peak_bytes", peak)  # noqa: B010 - any SwregError carries it
            raise error
        process.join()
        code = process.exitcode
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        died = AnalysisDied(
            f"the analysis process died ({how}) at a peak of {peak / GB:.3g} GB "
            f"(memory limit {limit_text})"
        )
        setattr(died, "peak_bytes", peak)  # noqa: B010
        raise died
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receive.close()
