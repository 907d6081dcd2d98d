"""Proven passwords: a client that proved the password keeps working on every worker while someone guesses.

Two app instances on one users database stand in for two gunicorn workers;
the fake clock drives time (no sleeps).
"""

import sqlite3

import pytest

from s3gate import keys
from s3gate.auth.config import check
from s3gate.auth.rules import Rule
from s3gate.auth.service import AuthService

from .conftest import FAST_HASHER, PASSWORD, basic, build_app, make_settings

pytestmark = pytest.mark.usefixtures("users_backend")  # SQLite, then PostgreSQL

XFF = "X-Forwarded-For"
CLIENT = "192.0.2.10"  # the proven curl
ATTACKER = "203.0.113.66"


@pytest.fixture
def two_workers(aiohttp_client, tmp_path, clock):
    """two_workers(**settings) -> (worker A, worker B, service A): one users database, one clock."""

    async def make(**overrides):
        overrides.setdefault("trusted_proxies", "127.0.0.1")  # lets each request pick its client address
        settings = make_settings(tmp_path, **overrides)
        a = await aiohttp_client(build_app(settings, clock))
        b = await aiohttp_client(build_app(settings, clock))
        service = a.server.app[keys.AUTH]
        await service.add_user("alice", PASSWORD)
        await service.grant("alice", Rule.parse("files:read"))
        return a, b, service

    return make


async def status(client, password, addr):
    resp = await client.get("/files/files/a", headers={**basic("alice", password), XFF: addr})
    return resp.status


async def test_proven_client_keeps_working_on_every_worker_during_an_attack(two_workers, clock, tmp_path):
    a, b, service = await two_workers(login_delay=1.0, login_max_failures=5, login_lockout=900)
    assert await status(a, PASSWORD, CLIENT) == 200  # proven once, on worker A only
    attacker, client = [], []
    for step in range(60):  # 300 s: five times the 60 s password_cache_ttl
        worker = (a, b)[step % 2]
        attacker.append(await status(worker, f"guess {step} wrong", ATTACKER))
        client.append((await status(a, PASSWORD, CLIENT), await status(b, PASSWORD, CLIENT)))
        clock.advance(5)
    assert set(client) == {(200, 200)}, client
    # The throttle still stopped the guessing: five verified guesses, then locked for the rest.
    assert attacker.count(401) == 5 and attacker[-40:] == [429] * 40, attacker
    # The attacker's address did not become the client's: a fresh address must prove itself (and is locked out).
    assert await status(b, PASSWORD, "192.0.2.99") == 429

    # A password change (here from another process, as `s3gate users passwd` does) voids the proof on both at once.
    await service.unlock(name="alice")
    cli = await AuthService.open(check(make_settings(tmp_path)), hasher=FAST_HASHER, clock=clock)
    try:
        await cli.set_password("alice", "a brand new password")
    finally:
        await cli.close()
    assert await status(a, PASSWORD, CLIENT) == 401
    await service.unlock(name="alice", remote=CLIENT)  # that failure made the next attempt wait (login_delay)
    assert await status(b, PASSWORD, CLIENT) == 401
    await service.unlock(name="alice", remote=CLIENT)
    assert await status(b, "a brand new password", CLIENT) == 200


async def test_a_proof_expires_after_ttl_without_use(two_workers, clock):
    a, b, service = await two_workers(login_delay=0, login_max_failures=1, password_cache_ttl=60)
    assert await status(a, PASSWORD, CLIENT) == 200
    assert await status(a, "wrong password!", ATTACKER) == 401  # locks the name
    clock.advance(59)
    assert await status(b, PASSWORD, CLIENT) == 200  # used: extended
    clock.advance(59 + 59)
    assert await status(a, PASSWORD, CLIENT) == 429  # idle for longer than the ttl: proven no more


async def test_guesses_from_the_proven_address_still_stop_at_the_address_limit(two_workers):
    """While the name is locked, the proof answers for its own address without argon2; every other
    password tried from there counts against the address, so it is no free guessing oracle."""
    a, b, service = await two_workers(login_delay=0, login_max_failures=2, login_max_failures_per_address=4)
    assert await status(a, PASSWORD, CLIENT) == 200
    for _ in range(2):
        assert await status(b, "wrong password!", ATTACKER) == 401
    for i in range(4):  # a guesser behind the client's own address (same NAT)
        assert await status((a, b)[i % 2], f"guess {i} wrong", CLIENT) == 429
    # Four refused guesses: the address is locked now, and the proven client with it.
    assert await status(a, PASSWORD, CLIENT) == 429
    assert await status(b, PASSWORD, CLIENT) == 429


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_disabling_voids_proofs_and_nothing_stores_the_password(two_workers, tmp_path):
    a, b, service = await two_workers()
    assert await status(a, PASSWORD, CLIENT) == 200
    db = tmp_path / "data" / "users.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT digest, address FROM password_proofs").fetchall()
    assert len(rows) == 1 and rows[0][1] == f"addr:{CLIENT}"
    raw = b"".join(p.read_bytes() for p in db.parent.glob("users.db*"))
    assert PASSWORD.encode() not in raw
    await service.set_disabled("alice", True)
    assert (await status(a, PASSWORD, CLIENT), await status(b, PASSWORD, CLIENT)) == (401, 401)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM password_proofs").fetchone()[0] == 0
