"""A burst of first-time logins fills a bounded hash queue (503 + Retry-After) and never freezes other traffic."""

import asyncio
import threading

import argon2

from s3gate import keys
from s3gate.auth.passwords import RETRY_AFTER, HashQueueFull, Passwords
from s3gate.auth.rules import Rule

from .conftest import FAST_HASHER, PASSWORD, basic, bearer, build_app, make_settings

XFF = "X-Forwarded-For"


class GatedHasher(argon2.PasswordHasher):
    """FAST_HASHER's parameters; every verify waits for the gate (a stand-in for a slow argon2)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1, type=argon2.Type.ID)
        self.gate = threading.Event()
        self.gate.set()
        self.inside = 0
        self._lock = threading.Lock()

    def verify(self, hash, password):
        with self._lock:
            self.inside += 1
        try:
            if not self.gate.wait(timeout=60):
                raise RuntimeError("gate never opened")
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.inside -= 1


async def until(condition, what: str) -> None:
    try:
        async with asyncio.timeout(30):
            while not condition():
                await asyncio.sleep(0.01)  # polling a condition, not picking a code path by time
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def test_full_queue_refuses_new_logins_while_tokens_and_proven_passwords_pass(aiohttp_client, tmp_path, clock):
    hasher = GatedHasher()
    app = build_app(make_settings(tmp_path, trusted_proxies="127.0.0.1", login_delay=0), clock, hasher=hasher)
    client = await aiohttp_client(app)
    service = app[keys.AUTH]
    passwords = service.passwords
    capacity = passwords.concurrency + passwords.queue
    names = [f"user{i}" for i in range(capacity + 3)]
    for name in ("alice", *names):
        await service.add_user(name, PASSWORD)
        await service.grant(name, Rule.parse("files:read"))
    token, _ = await service.create_token("alice")

    def get(headers, addr="192.0.2.1"):
        return client.get("/files/files/a", headers={**headers, XFF: addr})

    assert (await get(basic("alice", PASSWORD))).status == 200  # alice's curl proves her password

    hasher.gate.clear()
    logins = []
    try:
        logins += [asyncio.create_task(get(basic(n, PASSWORD), f"198.51.100.{i}")) for i, n in enumerate(names)]
        await until(lambda: passwords.pending >= capacity and hasher.inside == passwords.concurrency, "queue full")
        await until(lambda: sum(t.done() for t in logins) == 3, "the overflow is answered")
        refused = [t.result() for t in logins if t.done()]
        assert [r.status for r in refused] == [503] * 3
        assert all(r.headers["Retry-After"] == str(RETRY_AFTER) for r in refused)
        assert "too many logins at once" in await refused[0].text()

        # The queue is full and no hash can finish (the gate is shut), yet these are answered.
        assert (await get(bearer(token))).status == 200
        assert (await get(basic("alice", token))).status == 200  # a token as the Basic password
        assert (await get(basic("alice", PASSWORD))).status == 200  # proven from this address
        assert passwords.full and hasher.inside == passwords.concurrency
        assert sum(t.done() for t in logins) == 3  # every queued login is still waiting
    finally:
        hasher.gate.set()  # also when an assertion failed: let the hashing threads finish
    answers = await asyncio.gather(*logins)
    assert sorted(r.status for r in answers) == [200] * capacity + [503] * 3
    assert passwords.pending == 0
    assert (await get(basic("user0", PASSWORD), "198.51.100.200")).status == 200  # the queue is usable again


async def test_every_hash_takes_a_queue_place(tmp_path):
    """Hashing a new password (users add, passwd) goes through the same bounded queue."""
    passwords = Passwords(hasher=FAST_HASHER, concurrency=1, queue=0)
    async with passwords.slot():
        try:
            await passwords.hash(PASSWORD)
        except HashQueueFull as exc:
            assert exc.status == 503 and exc.headers == {"Retry-After": str(RETRY_AFTER)}
        else:
            raise AssertionError("a full queue must refuse")
    assert passwords.pending == 0
    assert (await passwords.hash(PASSWORD)).startswith("$argon2id$")
