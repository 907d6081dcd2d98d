"""Brute-force defence: failed logins slow down, then lock out, per user name and per client address.

After the n-th failure within the window, that user name (or address) must
wait ``delay * 2**(n-1)`` seconds (at most ``MAX_DELAY``) before the next
attempt is even checked; at ``max_failures`` it is locked out for
``lockout`` seconds. Early attempts get 429 with Retry-After and are not
verified, so they cost no argon2 time. Counters live in the users store, so
every worker and a restart see the same numbers, and ``s3gate users unlock``
can clear them. Unknown user names are counted like real ones: the answers
never tell which names exist.

A client that already proved the password from its address is not held back
by a block on the user name (someone else is guessing it), only by a block on
its own address.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import metrics
from ..errors import TooManyRequests
from .store import Store

MAX_DELAY = 60.0


@dataclass(frozen=True)
class ThrottleConfig:
    delay: float = 1.0
    max_failures: int = 10
    max_failures_per_address: int = 50
    lockout: float = 900.0

    def wait(self, failures: int, limit: int) -> float:
        if failures >= limit:
            return self.lockout
        if self.delay <= 0 or failures <= 0:
            return 0.0
        return min(self.delay * 2 ** (failures - 1), MAX_DELAY, self.lockout)


def user_key(name: str) -> str:
    return "user:" + name[:128]  # any string can be tried as a name: bound the row size


def address_key(remote: str | None) -> str:
    """IPv6 clients are counted per /64: one host usually owns the whole /64."""
    if not remote:
        return "addr:unknown"
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return "addr:" + remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.IPv6Network((int(ip) >> 64 << 64, 64))}"
    return f"addr:{ip}"


class Throttle:
    def __init__(self, store: Store, config: ThrottleConfig, clock: Callable[[], float] = time.time):
        self.store = store
        self.config = config
        self.clock = clock

    async def check(self, name: str, remote: str | None, *, proven_address: bool = False) -> None:
        """Raise 429 (with Retry-After) while the user name or the address must wait.

        ``proven_address``: a client at this address has proven the user's
        password, and this attempt did not match that proof. While only the
        name is blocked, that proof lets its own client through (see
        ``AuthService.authenticate_password``), so each refused attempt from
        there was still a free check of one guess: it counts as a failure of the
        address, and guessing from there stops at the address's limit.
        """
        now = self.clock()
        akey = address_key(remote)
        found = await self.store.failures([user_key(name), akey])
        until = max((f.blocked_until for f in found.values()), default=0.0)
        address_until = found[akey].blocked_until if akey in found else 0.0
        if until > now and proven_address and address_until <= now:
            cfg = self.config
            counted = await self.store.record_failure(
                akey, now, now - cfg.lockout, lambda n: cfg.wait(n, cfg.max_failures_per_address)
            )
            until = max(until, counted.blocked_until)
        if until > now:
            retry = max(1, math.ceil(until - now))
            raise TooManyRequests(
                f"too many failed logins; try again in {retry} s", headers={"Retry-After": str(retry)}
            )

    async def failed(self, name: str, remote: str | None) -> float:
        """Count a failure for both subjects; return how long the caller must now wait."""
        now = self.clock()
        forget = now - self.config.lockout
        cfg = self.config
        u = await self.store.record_failure(user_key(name), now, forget, lambda n: cfg.wait(n, cfg.max_failures))
        a = await self.store.record_failure(
            address_key(remote), now, forget, lambda n: cfg.wait(n, cfg.max_failures_per_address)
        )
        wait = max(u.blocked_until, a.blocked_until) - now
        metrics.login_failed(locked=wait >= cfg.lockout)  # as the audit log's login_locked
        return wait

    async def address_blocked(self, remote: str | None) -> bool:
        key = address_key(remote)
        found = await self.store.failures([key])
        return key in found and found[key].blocked_until > self.clock()

    async def succeeded(self, name: str) -> None:
        # The address counter is left alone: one valid account must not reset
        # the count for guesses at others from the same place.
        await self.store.clear_failures(user_key(name))

    async def unlock(self, *, name: str | None = None, remote: str | None = None) -> bool:
        done = False
        if name is not None:
            done |= await self.store.clear_failures(user_key(name))
        if remote is not None:
            done |= await self.store.clear_failures(address_key(remote))
        return done
