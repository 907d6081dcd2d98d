"""Password hashing with argon2id, always off the event loop.

argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: 3
passes over 64 MiB) costs tens of milliseconds of CPU per check, so every
hash and verify runs in a worker thread (argon2-cffi releases the GIL) and at
most one per core runs at once, leaving the default executor to others.

The queue for those slots is bounded (``HASH_QUEUE`` waiting per worker): a
burst of first-time logins beyond it gets 503 with Retry-After at once,
instead of making every later password check wait seconds. Proven passwords
and tokens never take a slot, so they are answered whatever the queue holds.

Unknown users are checked against a dummy hash made with the same
parameters, so "no such user" and "wrong password" take the same time and
give the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import GatewayError

MAX_PASSWORD_LENGTH = 1024  # longer input is refused, not hashed (no CPU games)
# Password hashes that may wait for a slot, per worker, beyond the one running
# per core. At tens of milliseconds a hash, the last in line waits well under
# a second on two cores; more are refused (HashQueueFull) rather than queued.
HASH_QUEUE = 16
RETRY_AFTER = 1  # seconds: about the time the queue takes to drain


class HashQueueFull(GatewayError):
    status, code = 503, "busy"
    default_message = "too many logins at once; try again in a moment"

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": str(RETRY_AFTER)})


class PasswordRejected(ValueError):
    """A new password that breaks the policy; the message says which rule."""


class Passwords:
    def __init__(
        self,
        min_length: int = 12,
        hasher: argon2.PasswordHasher | None = None,
        concurrency: int | None = None,
        queue: int = HASH_QUEUE,
    ):
        # argon2.Type.ID is the default type; spelled out because it is the point.
        self.hasher = hasher or argon2.PasswordHasher(type=argon2.Type.ID)
        self.min_length = min_length
        self.concurrency = concurrency or os.cpu_count() or 1
        self.queue = queue
        self._limit = asyncio.Semaphore(self.concurrency)
        self.pending = 0  # callers holding a slot or waiting for one
        self._dummy: str | None = None

    @property
    def full(self) -> bool:
        return self.pending >= self.concurrency + self.queue

    def check_policy(self, password: str) -> None:
        if len(password) < self.min_length:
            raise PasswordRejected(f"password too short: at least {self.min_length} characters")
        if len(password) > MAX_PASSWORD_LENGTH:
            raise PasswordRejected(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
        if password != password.strip():
            raise PasswordRejected("password may not start or end with whitespace")
        try:
            password.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): not text
            raise PasswordRejected("password must be valid Unicode text") from None

    async def hash(self, password: str) -> str:
        """Check the policy and return an argon2id hash (the only form stored)."""
        self.check_policy(password)
        async with self.slot():
            return await asyncio.to_thread(self.hasher.hash, password)

    async def rehash(self, password: str) -> str:
        """A fresh hash with today's parameters for a password that just verified (no policy check)."""
        async with self.slot():
            return await asyncio.to_thread(self.hasher.hash, password)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Held around one hash (``async with passwords.slot():`` then ``verify_in_slot``).

        Raises HashQueueFull (503) at once when ``queue`` callers already wait.
        """
        if self.full:
            raise HashQueueFull()
        self.pending += 1
        try:
            async with self._limit:
                yield
        finally:
            self.pending -= 1

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``; ``None`` (no such user) is checked against a dummy."""
        await self.dummy_hash()
        async with self.slot():
            return await self.verify_in_slot(stored, password)

    async def verify_in_slot(self, stored: str | None, password: str) -> bool:
        """``verify`` for a caller already holding ``slot()`` (and having awaited ``dummy_hash()``)."""
        if len(password) > MAX_PASSWORD_LENGTH:
            password = password[:MAX_PASSWORD_LENGTH]  # still spend the time; cannot match anyway
            stored = None
        target = stored or self._dummy
        if target is None:
            raise RuntimeError("await dummy_hash() before taking a slot")
        ok = await asyncio.to_thread(self._verify, target, password)
        return ok and bool(stored)

    def _verify(self, stored: str, password: str) -> bool:
        # Bytes, so a lone surrogate (JSON can send one) is a wrong password, not an exception:
        # its bytes are not UTF-8, so they equal no stored password's.
        secret = password.encode("utf-8", "surrogatepass")
        try:
            return self.hasher.verify(stored, secret)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except (InvalidHashError, VerificationError, ValueError):
            return True

    async def dummy_hash(self) -> str:
        if self._dummy is None:
            async with self.slot():
                dummy = await asyncio.to_thread(self.hasher.hash, secrets.token_urlsafe(24))
            self._dummy = self._dummy or dummy
        return self._dummy
