"""Pinning at submission runs in threads of its own, with a budget: a slow or hung Hub costs
at most `concurrency` threads and never a thread or a database connection that lookups need
(those run in anyio's shared thread pool, which Hub calls here never touch).

A submission waits for a free slot and its answer together for at most `budget` seconds, then
answers 503 hub_unavailable (Retry-After). A call already running when its budget runs out
finishes in the background within the Hub client's own timeouts (workers/sources/hub_client).
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from workers.contract.errors import Unavailable

T = TypeVar("T")

# Submissions allowed to wait for a slot, per slot: past that, answer 503 at once rather than
# queue work that would only run out its budget.
WAITING_PER_SLOT = 8


class HubBusy(Unavailable):
    """The Hub did not answer within the submission's budget (503 hub_unavailable)."""

    code = "hub_unavailable"


class HubGate:
    def __init__(self, *, concurrency: int, budget: float):
        self.concurrency, self.budget = concurrency, budget
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="hub-pinning")
        self._in_flight = 0

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        if self._in_flight >= self.concurrency * (1 + WAITING_PER_SLOT):
            raise HubBusy("the Hub is slow to answer and too many submissions wait for it")
        self._in_flight += 1
        future = self._executor.submit(fn, *args, **kwargs)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.budget)
        except TimeoutError:
            future.cancel()  # still queued: never runs
            raise HubBusy(
                f"the Hub did not answer within {self.budget:g} s: try again later"
            ) from None
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
