"""A per-worker byte budget for upload buffers.

Uploads reserve a whole part before filling it and give it back once S3 has
the part. When the budget is spent, ``acquire`` waits: the upload handler stops
reading its socket and TCP backpressure slows the client; nothing fails.
Reserving a whole part up front (not chunk by chunk) is what keeps this free of
deadlock: a waiting upload holds no partial reservation.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib


class MemoryBudget:
    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self.peak = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, n: int) -> None:
        n = min(n, self.total)
        if not self._waiters and self.used + n <= self.total:
            self._take(n)
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted just as we were cancelled
            else:
                # _wake() may already have dropped our cancelled future from
                # the queue (a release ran between the cancel and this line).
                with contextlib.suppress(ValueError):
                    self._waiters.remove((n, fut))
                self._wake()
            raise

    def release(self, n: int) -> None:
        n = min(n, self.total)
        self.used -= n
        assert self.used >= 0, "budget released more than acquired"
        self._wake()

    def _take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)

    def _wake(self) -> None:
        # First come, first served: a large request is not starved by small ones.
        while self._waiters:
            n, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if self.used + n > self.total:
                break
            self._waiters.popleft()
            self._take(n)
            fut.set_result(None)
