"""A per-worker byte budget for upload and download buffers.

Uploads reserve a whole part before filling it and give it back once S3 has
the part. Proxied downloads reserve what their buffers can hold (see
``s3gate.http.downloads.download_reservation``) before asking S3 for the
bytes and give it back when the response ends. When the budget is spent,
``acquire`` waits: the handler stops reading its socket (or does not start the
download) and TCP backpressure slows the client; nothing fails. Reserving
whole amounts up front (not chunk by chunk) is what keeps this free of
deadlock: a waiting request holds no partial reservation.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable


class MemoryBudget:
    def __init__(self, total: int, *, observe: Callable[[int, int], None] | None = None):
        self.total = total
        self.used = 0
        self.peak = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        # Told (bytes in use, requests waiting) after every change: the metrics hook.
        self._observe = observe or (lambda used, waiting: None)

    @property
    def waiting(self) -> int:
        return sum(1 for _, fut in self._waiters if not fut.done())

    async def acquire(self, n: int) -> int:
        """Wait for n bytes; returns what was granted (n, or the whole budget if n is more).

        Give back exactly the grant: a request larger than the budget runs alone.
        """
        n = min(n, self.total)
        if not self._waiters and self.used + n <= self.total:
            self._take(n)
            return n
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        self._observe(self.used, self.waiting)
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
                self._observe(self.used, self.waiting)
            raise
        return n

    @contextlib.asynccontextmanager
    async def reserve(self, n: int) -> AsyncIterator[Reservation]:
        """Hold n bytes (capped at the total) for the duration of the block."""
        n = min(max(n, 0), self.total)
        if n:
            await self.acquire(n)
        held = Reservation(self, n)
        try:
            yield held
        finally:
            held.release()

    def release(self, n: int) -> None:
        """Give back n bytes of what acquire() granted (never more than the grant)."""
        self.used -= n
        assert self.used >= 0, "budget released more than acquired"
        self._wake()
        self._observe(self.used, self.waiting)

    def _take(self, n: int) -> None:
        self.used += n
        self.peak = max(self.peak, self.used)
        self._observe(self.used, self.waiting)

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


class Reservation:
    """Bytes held from a budget by :meth:`MemoryBudget.reserve`."""

    def __init__(self, budget: MemoryBudget, n: int):
        self._budget = budget
        self.n = n

    def shrink(self, n: int) -> None:
        """Keep only n bytes: the need turned out smaller than reserved."""
        n = max(n, 0)
        if n < self.n:
            self._budget.release(self.n - n)
            self.n = n

    def release(self) -> None:
        if self.n:
            self._budget.release(self.n)
            self.n = 0
