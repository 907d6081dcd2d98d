"""Brute force: growing delays and lockouts per user name and per client address, 429 with Retry-After."""

import pytest

from s3gate.auth.rules import Rule
from s3gate.auth.throttle import ThrottleConfig, address_key

from .conftest import PASSWORD, basic

pytestmark = pytest.mark.usefixtures("users_backend")  # SQLite, then PostgreSQL

XFF = "X-Forwarded-For"


def test_delays_grow_then_lock():
    cfg = ThrottleConfig(delay=1.0, max_failures=6, lockout=900)
    assert [cfg.wait(n, cfg.max_failures) for n in range(0, 8)] == [0, 1, 2, 4, 8, 16, 900, 900]
    assert ThrottleConfig(delay=10, max_failures=100).wait(10, 100) == 60  # capped
    assert ThrottleConfig(delay=0, max_failures=3).wait(2, 3) == 0
    assert ThrottleConfig(delay=10, max_failures=100, lockout=30).wait(5, 100) == 30  # never over the lockout


def test_address_keys():
    assert address_key("203.0.113.9") == "addr:203.0.113.9"
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "addr:2001:db8::/64"
    assert address_key("::ffff:203.0.113.9") == "addr:203.0.113.9"
    assert address_key(None) == "addr:unknown"
    assert address_key("proxy.sock") == "addr:proxy.sock"  # not an IP address: counted as it is


async def client_for(make_client, **settings):
    settings.setdefault("trusted_proxies", "127.0.0.1")  # lets each test pick its client address
    client, service = await make_client(**settings)
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse("files:read"))
    return client, service


async def get(client, name, password, addr="198.51.100.1"):
    return await client.get("/files/files/a", headers={**basic(name, password), XFF: addr})


async def test_growing_delays_with_retry_after(make_client, clock):
    client, _ = await client_for(make_client, login_delay=1.0, login_max_failures=5, login_lockout=600)
    assert (await get(client, "alice", "wrong password")).status == 401  # failure 1: wait 1 s
    resp = await get(client, "alice", PASSWORD)
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"  # even the right password waits
    clock.advance(1)
    assert (await get(client, "alice", "wrong password")).status == 401  # failure 2: wait 2 s
    resp = await get(client, "alice", "wrong password")
    assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    clock.advance(2)
    assert (await get(client, "alice", PASSWORD)).status == 200  # success clears the user's count
    assert (await get(client, "alice", "wrong password")).status == 401
    resp = await get(client, "alice", "wrong password")
    # The user's count restarted (1 s) but the address remembers its 3rd failure (4 s).
    assert resp.status == 429 and resp.headers["Retry-After"] == "4"


async def test_lockout_per_user_name_from_many_addresses(make_client, clock):
    client, _ = await client_for(make_client, login_delay=0, login_max_failures=3, login_lockout=900)
    for i in range(3):
        assert (await get(client, "alice", "wrong password", f"198.51.100.{i}")).status == 401
    resp = await get(client, "alice", PASSWORD, "198.51.100.77")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "900"
    clock.advance(899)
    assert (await get(client, "alice", PASSWORD, "198.51.100.77")).status == 429
    clock.advance(1)
    assert (await get(client, "alice", PASSWORD, "198.51.100.77")).status == 200


async def test_lockout_per_address_across_user_names(make_client, clock):
    client, _ = await client_for(make_client, login_delay=0, login_max_failures=100,
                                 login_max_failures_per_address=4, login_lockout=300)
    for name in ("a1", "a2", "a3", "a4"):
        assert (await get(client, name, "guess guess guess", "203.0.113.5")).status == 401
    resp = await get(client, "alice", PASSWORD, "203.0.113.5")
    assert resp.status == 429 and resp.headers["Retry-After"] == "300"
    assert (await get(client, "alice", PASSWORD, "203.0.113.6")).status == 200  # others are unaffected


async def test_unknown_names_are_throttled_like_real_ones(make_client):
    client, _ = await client_for(make_client, login_delay=0, login_max_failures=2)
    for name in ("alice", "nobody"):
        for i in range(2):
            assert (await get(client, name, "wrong password", f"192.0.2.{i}")).status == 401
        assert (await get(client, name, "wrong password", "192.0.2.99")).status == 429


async def test_login_form_is_throttled_too(make_client):
    client, _ = await client_for(make_client, login_delay=0, login_max_failures=2)
    for _ in range(2):
        resp = await client.post("/login", data={"username": "alice", "password": "wrong password"}, headers={XFF: "192.0.2.1"})
        assert resp.status == 401
    resp = await client.post("/login", data={"username": "alice", "password": PASSWORD}, headers={XFF: "192.0.2.1"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert f"Too many failed logins: try again in {resp.headers['Retry-After']} s." in await resp.text()


async def test_a_verified_client_is_not_locked_out_by_an_attacker(make_client):
    """curl/wget sessions already proven with the right password keep working (cached, no guessing involved)."""
    client, _ = await client_for(make_client, login_delay=0, login_max_failures=2)
    assert (await get(client, "alice", PASSWORD, "192.0.2.10")).status == 200
    for _ in range(2):
        await get(client, "alice", "wrong password", "203.0.113.66")
    assert (await get(client, "alice", "another guess", "203.0.113.66")).status == 429
    assert (await get(client, "alice", PASSWORD, "192.0.2.10")).status == 200


async def test_a_success_clears_the_users_count(make_client):
    client, _ = await client_for(make_client, login_delay=0, login_max_failures=3, login_lockout=900)
    for addr in ("198.51.100.1", "198.51.100.2"):
        assert (await get(client, "alice", "wrong password", addr)).status == 401
    assert (await get(client, "alice", PASSWORD, "198.51.100.3")).status == 200  # the count starts again
    for addr in ("198.51.100.4", "198.51.100.5"):
        assert (await get(client, "alice", "wrong password", addr)).status == 401
    assert (await get(client, "alice", PASSWORD, "198.51.100.6")).status == 200  # two of three: not locked


async def test_someone_elses_login_keeps_the_counts(make_client):
    """A new session purges what has expired, never failure counts still in their window."""
    client, service = await client_for(make_client, login_delay=0, login_max_failures=3, login_lockout=900)
    await service.add_user("bob", PASSWORD)
    await service.grant("bob", Rule.parse("files:read"))
    for i in range(2):
        assert (await get(client, "bob", "wrong password", f"198.51.100.{i}")).status == 401
    form = {"username": "alice", "password": PASSWORD}
    resp = await client.post("/login", data=form, headers={XFF: "198.51.100.50"}, allow_redirects=False)
    assert resp.status == 303  # alice (or the attacker's own account) signs in
    assert (await get(client, "bob", "wrong password", "198.51.100.9")).status == 401  # bob's third failure
    assert (await get(client, "bob", PASSWORD, "198.51.100.77")).status == 429  # locked out all the same


async def test_without_the_cache_a_refused_attempt_is_not_an_address_failure(make_client):
    """Only an address with a proof pays for attempts refused while the name is locked."""
    client, service = await client_for(
        make_client, login_delay=0, login_max_failures=1, login_max_failures_per_address=2, password_cache_ttl=0
    )
    await get(client, "alice", "wrong password", "198.51.100.1")  # alice is locked
    for _ in range(2):
        assert (await get(client, "alice", PASSWORD, "198.51.100.2")).status == 429
    assert await service.unlock(name="alice")
    assert (await get(client, "alice", PASSWORD, "198.51.100.2")).status == 200  # .2 was never counted


async def test_a_proof_in_use_is_extended(make_client, clock):
    """Used every 36 s, a 60 s proof lives on (extended once less than half of it is left)."""
    client, _ = await client_for(make_client, login_delay=0, login_max_failures=1, password_cache_ttl=60)
    assert (await get(client, "alice", PASSWORD, "192.0.2.10")).status == 200  # proven until 60
    clock.advance(36)
    assert (await get(client, "alice", PASSWORD, "192.0.2.10")).status == 200  # 24 s left: extended to 96
    await get(client, "alice", "wrong password", "203.0.113.66")  # an attacker locks the name
    clock.advance(36)
    assert (await get(client, "alice", PASSWORD, "192.0.2.10")).status == 200  # still proven


async def test_a_proven_password_is_still_a_password(make_client):
    client, _ = await client_for(make_client, password_cache_ttl=60)
    for _ in range(2):  # verified with argon2, then answered by the proof (what whoami and the audit log show)
        resp = await client.get("/api/whoami", headers={**basic("alice", PASSWORD), XFF: "192.0.2.10"})
        assert (await resp.json())["via"] == "password"


async def test_unlock(make_client):
    client, service = await client_for(make_client, login_delay=0, login_max_failures=1, password_cache_ttl=0)
    assert not await service.unlock(name="alice", remote="192.0.2.200")  # nothing was locked: says so
    await get(client, "alice", "wrong password")
    assert (await get(client, "alice", PASSWORD, "192.0.2.200")).status == 429
    assert await service.unlock(name="alice", remote="192.0.2.200")  # the name was locked (the address was not)
    assert (await get(client, "alice", PASSWORD, "192.0.2.200")).status == 200


@pytest.mark.parametrize("trusted, expected", [(True, "203.0.113.7"), (False, "127.0.0.1")])
async def test_client_address_uses_forwarded_for_only_when_trusted(make_client, trusted, expected, tmp_path):
    client, service = await make_client(
        trusted_proxies="127.0.0.1" if trusted else "", login_max_failures_per_address=1, login_max_failures=50
    )
    resp = await client.get("/files/files/a", headers={**basic("x", "wrong password"), XFF: "10.9.9.9, 203.0.113.7"})
    assert resp.status == 401
    found = await service.store.failures([address_key(expected)])
    assert found and found[address_key(expected)].count == 1


async def test_a_parallel_burst_meets_the_counters(make_client):
    """Guesses sent all at once queue for a hashing slot and meet the counters their predecessors set."""
    import asyncio
    import os

    client, service = await client_for(make_client, login_delay=0, login_max_failures=3)
    # No more than the hash queue holds (beyond it: 503, tested in test_hash_queue.py).
    slots = os.cpu_count() or 1
    n = min(20, service.passwords.concurrency + service.passwords.queue)
    answers = await asyncio.gather(*(get(client, "alice", f"guess number {i}", f"192.0.2.{i}") for i in range(n)))
    statuses = sorted(r.status for r in answers)
    # At most one guess per other hashing slot (one per core) was already past the check.
    assert statuses.count(401) <= 3 + slots - 1 and statuses.count(429) >= n - (3 + slots - 1), statuses
