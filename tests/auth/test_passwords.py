"""argon2id, never plaintext, the length rule, and unknown users that look like wrong passwords."""

import asyncio
import statistics
import time

import argon2
import pytest

from s3gate.auth.config import check
from s3gate.auth.passwords import MAX_PASSWORD_LENGTH, HashQueueFull, PasswordRejected, Passwords
from s3gate.auth.service import AuthService, InvalidCredentials
from s3gate.errors import BadRequest

from .conftest import FAST_HASHER, PASSWORD, make_settings


async def test_stored_hash_is_argon2id_with_production_parameters(tmp_path):
    settings = make_settings(tmp_path)
    service = await AuthService.open(check(settings))  # the real parameters, not the test ones
    try:
        await service.add_user("alice", PASSWORD)
        user = await service.store.get_user("alice")
        assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert PASSWORD not in user.password_hash
    finally:
        await service.close()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("users.db*"))
    assert PASSWORD.encode() not in raw


async def test_minimum_length_and_other_rules(service):
    with pytest.raises(BadRequest, match="at least 12"):
        await service.add_user("alice", "short")
    with pytest.raises(BadRequest, match="whitespace"):
        await service.add_user("alice", " padded password ")
    with pytest.raises(BadRequest, match="invalid user name"):
        await service.add_user("al:ice", PASSWORD)
    with pytest.raises(BadRequest, match="invalid user name"):
        await service.add_user("*", PASSWORD)
    assert await service.store.count_users() == 0
    p = Passwords(min_length=20)
    with pytest.raises(PasswordRejected):
        p.check_policy("x" * 19)
    p.check_policy("x" * 20)  # exactly the minimum is enough
    await service.add_user("bob", None)  # no password at all: tokens only
    with pytest.raises(InvalidCredentials):
        await service.authenticate_password("bob", PASSWORD, "10.0.0.4")



async def test_the_operators_minimum_length_is_the_one_enforced(tmp_path):
    """`password_min_length = 16` in the settings: 15 characters are refused, 16 accepted."""
    service = await AuthService.open(check(make_settings(tmp_path, password_min_length=16)), hasher=FAST_HASHER)
    try:
        with pytest.raises(BadRequest, match="at least 16"):
            await service.add_user("alice", "x" * 15)
        await service.add_user("alice", "x" * 16)
    finally:
        await service.close()

async def test_the_longest_password_works_and_a_longer_one_is_just_wrong(service):
    longest = "x" * MAX_PASSWORD_LENGTH
    await service.add_user("alice", longest)
    assert (await service.authenticate_password("alice", longest, "10.0.0.1")).name == "alice"
    with pytest.raises(InvalidCredentials):  # a 401 like any wrong password, never a 500
        await service.authenticate_password("alice", longest + "x", "10.0.0.2")


async def test_a_damaged_stored_hash_lets_no_password_in(service):
    user = await service.add_user("alice", PASSWORD)
    for damaged in ("not an argon2 hash", "$argon2id$v=19$m=65536,t=3,p=4$garbage"):
        await service.store.update_password(user.id, damaged, 0.0)  # a bad import, a damaged row
        with pytest.raises(InvalidCredentials):
            await service.authenticate_password("alice", PASSWORD, "10.0.0.3")


async def test_unknown_user_and_wrong_password_are_the_same_answer(service, monkeypatch):
    await service.add_user("alice", PASSWORD)
    calls = []
    real = service.passwords._verify
    monkeypatch.setattr(service.passwords, "_verify", lambda stored, pw: calls.append(stored) or real(stored, pw))
    errors = []
    for name in ("alice", "nobody"):
        with pytest.raises(InvalidCredentials) as info:
            await service.authenticate_password(name, "wrong password!", "10.0.0.1")
        errors.append((info.value.status, info.value.message, info.value.headers))
    assert errors[0] == errors[1]
    # Both ran one argon2 verification: the unknown user against the dummy hash.
    assert len(calls) == 2 and calls[1] == await service.passwords.dummy_hash()


async def test_unknown_user_takes_as_long_as_a_wrong_password(tmp_path):
    service = await AuthService.open(check(make_settings(tmp_path, login_delay=0, login_max_failures=1000,
                                                          login_max_failures_per_address=1000)))
    try:
        await service.add_user("alice", PASSWORD)
        await service.passwords.dummy_hash()

        async def timed(name):
            t0 = time.perf_counter()
            with pytest.raises(InvalidCredentials):
                await service.authenticate_password(name, "wrong password!", "10.0.0.1")
            return time.perf_counter() - t0

        known, unknown = [], []
        for _ in range(5):
            known.append(await timed("alice"))
            unknown.append(await timed("nobody"))
        ratio = statistics.median(unknown) / statistics.median(known)
        assert 0.4 < ratio < 2.5, (known, unknown)  # interleaved, so machine load hits both alike
    finally:
        await service.close()


async def test_disabled_user_with_the_right_password_gets_the_same_answer(service):
    await service.add_user("alice", PASSWORD)
    await service.set_disabled("alice", True)
    with pytest.raises(InvalidCredentials):
        await service.authenticate_password("alice", PASSWORD, "10.0.0.1")
    await service.set_disabled("alice", False)
    assert (await service.authenticate_password("alice", PASSWORD, "10.0.0.1")).name == "alice"


async def test_old_parameters_are_upgraded_at_login(service):
    old = argon2.PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash(PASSWORD)
    user = await service.store.create_user("alice", old, False, 0)
    await service.authenticate_password("alice", PASSWORD, "10.0.0.1")
    new = (await service.store.get_user_by_id(user.id)).password_hash
    assert new != old and not FAST_HASHER.check_needs_rehash(new)


async def test_a_busy_hash_queue_postpones_the_upgrade(service, monkeypatch):
    old = argon2.PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash(PASSWORD)
    user = await service.store.create_user("alice", old, False, 0)

    async def queue_full(password):
        raise HashQueueFull()

    monkeypatch.setattr(service.passwords, "rehash", queue_full)
    assert (await service.authenticate_password("alice", PASSWORD, "10.0.0.1")).name == "alice"  # still signed in
    assert (await service.store.get_user_by_id(user.id)).password_hash == old  # upgraded at a later login


async def test_password_change_invalidates_the_verified_cache(service):
    await service.add_user("alice", PASSWORD)
    await service.authenticate_password("alice", PASSWORD, "10.0.0.1")  # cached now
    await service.set_password("alice", "another good password")
    with pytest.raises(InvalidCredentials):
        await service.authenticate_password("alice", PASSWORD, "10.0.0.1")


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def test_hashing_and_the_database_never_run_on_the_event_loop(tmp_path):
    """Every argon2 call and every SQL statement runs on a thread with no event loop (deterministic, unlike timing)."""
    seen: list[tuple[str, bool]] = []

    class Spy(argon2.PasswordHasher):
        def hash(self, password, **kw):
            seen.append(("hash", _on_loop()))
            return super().hash(password, **kw)

        def verify(self, hash, password):
            seen.append(("verify", _on_loop()))
            return super().verify(hash, password)

    spy = Spy(time_cost=1, memory_cost=1024, parallelism=1)
    service = await AuthService.open(check(make_settings(tmp_path)), hasher=spy)
    db = service.store.db
    await db._call(lambda: db.conn.set_trace_callback(lambda sql: seen.append(("sql", _on_loop()))))
    try:
        await service.add_user("alice", PASSWORD)
        await service.authenticate_password("alice", PASSWORD, "10.0.0.1")
        with pytest.raises(InvalidCredentials):
            await service.authenticate_password("ghost", PASSWORD, "10.0.0.1")
        await service.set_password("alice", "another good password")
        await service.create_token("alice")
    finally:
        await service.close()
    kinds = {kind for kind, _ in seen}
    assert kinds == {"hash", "verify", "sql"}
    assert [entry for entry in seen if entry[1]] == []


async def test_a_password_that_is_not_text_is_refused_not_a_crash(service):
    """A lone surrogate (JSON's "\\ud800") cannot be hashed as UTF-8: setting it is a 400."""
    await service.add_user("alice", PASSWORD)
    with pytest.raises(BadRequest, match="valid Unicode"):
        await service.set_password("alice", "\ud800" + PASSWORD)

