"""The users store on both databases: migrations from empty and from version 1, concurrency, file modes."""

import asyncio
import os
import sqlite3
import stat
import time

import pytest

from s3gate.auth import migrations
from s3gate.auth.database import PostgresDatabase, SQLiteDatabase, open_database, redact_url
from s3gate.auth.rules import Rule
from s3gate.auth.sql import SQLStore, open_store
from s3gate.auth.store import Failures
from s3gate.errors import ConfigError

pytestmark = pytest.mark.usefixtures("users_backend")
TABLES = {"users", "rules", "sessions", "tokens", "token_rules", "login_failures", "password_proofs"}


@pytest.fixture
def users_db(users_backend, tmp_path):
    """The users_db setting of this run: a file in tmp_path, or this test's PostgreSQL database."""
    return os.environ["S3GATE_USERS_DB"] if users_backend == "postgresql" else str(tmp_path / "d" / "users.db")


async def tables(db) -> set[str]:
    if db.dialect == "sqlite":
        rows = await db.all("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await db.all("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


async def test_migrates_an_empty_database_to_the_latest(tmp_path, users_db):
    store = await open_store(tmp_path, users_db)
    try:
        assert await store.schema_version() == migrations.LATEST
        assert TABLES <= await tables(store.db)
        assert await store.count_users() == 0
    finally:
        await store.close()
    # Opening again is a no-op.
    store = await open_store(tmp_path, users_db)
    assert await store.schema_version() == migrations.LATEST
    await store.close()


@pytest.mark.sqlite_only
async def test_the_sqlite_file_is_private(tmp_path):
    path = tmp_path / "d" / "users.db"
    store = await open_store(tmp_path, str(path))
    await store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def make_v1(db):
    """A database exactly as version 1 left it, with data."""
    assert await migrations.migrate(db, target=1) == [1]
    now = time.time()
    async with db.connection() as c:
        for uid, name, admin in ((1, "alice", 0), (2, "root", 1)):
            await c.run(
                "INSERT INTO users (id, name, password_hash, is_admin, created_at) VALUES (?, ?, ?, ?, ?)",
                (uid, name, f"$argon2id${name}", admin, now),
            )
        # v1 kept prefixes as typed: 'docs' and 'docs/' were two rules.
        for bucket, prefix, actions in (
            ("files", "docs", "read"),
            ("files", "docs/", "list,write"),
            ("photos", "", "read"),
        ):
            await c.run(
                "INSERT INTO rules (user_id, bucket, prefix, actions) VALUES (1, ?, ?, ?)", (bucket, prefix, actions)
            )
        await c.run(
            "INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES ('h', 1, ?, ?)", (now, now + 60)
        )
    return now


async def test_migrates_from_version_1_keeping_data(tmp_path, users_db):
    db = await open_database(tmp_path, users_db)
    created = await make_v1(db)
    assert "tokens" not in await tables(db)
    store = await SQLStore.open(db)
    try:
        assert await store.schema_version() == migrations.LATEST
        alice = await store.get_user("alice")
        assert alice is not None and not alice.disabled and not alice.admin
        assert alice.password_hash == "$argon2id$alice"
        assert alice.password_changed_at == pytest.approx(created)
        assert (await store.get_user("root")).admin
        rules = await store.rules_for(alice.id)
        # 'docs' became the folder 'docs/' and merged with the existing 'docs/' rule.
        assert rules == [
            Rule("files", "docs/", frozenset({"read", "list", "write"})),
            Rule("photos", "", frozenset({"read"})),
        ]
        session = await store.session_by_digest("h")
        assert session is not None and session.remote == ""
        assert await store.list_tokens() == []
    finally:
        await store.close()


async def test_refuses_a_newer_schema(tmp_path, users_db):
    db = await open_database(tmp_path, users_db)
    async with db.transaction() as tx:
        await db.set_version(tx, 99)
    await db.close()
    with pytest.raises(ConfigError, match="newer"):
        await open_store(tmp_path, users_db)


async def test_a_failed_migration_leaves_the_old_version(tmp_path, users_db, monkeypatch):
    db = await open_database(tmp_path, users_db)
    await make_v1(db)

    async def broken(tx):
        raise RuntimeError("boom")

    step = migrations.Migration(2, "x", ("ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",), broken)
    monkeypatch.setattr(migrations, "MIGRATIONS", (migrations.MIGRATIONS[0], step))
    with pytest.raises(RuntimeError):
        await migrations.migrate(db)
    assert await migrations.current_version(db) == 1
    # The column the failed step added is gone with it (DDL is transactional on both).
    await db.run("INSERT INTO users (id, name, created_at) VALUES (3, 'carol', 0)")
    with pytest.raises(Exception, match="disabled"):
        await db.all("SELECT disabled FROM users")
    await db.close()


async def test_concurrent_openers_migrate_once(tmp_path, users_db):
    stores = await asyncio.gather(*(open_store(tmp_path, users_db) for _ in range(4)))
    for s in stores:
        assert await s.schema_version() == migrations.LATEST
        await s.close()


async def test_an_unknown_database_url_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="mysql"):
        await open_store(tmp_path, "mysql://db/users")


async def test_grant_merges_and_revoke_subtracts(tmp_path, users_db):
    store = await open_store(tmp_path, users_db)
    try:
        user = await store.create_user("bob", None, False, time.time())
        await store.grant(user.id, Rule.parse("files/a:read"))
        merged = await store.grant(user.id, Rule.parse("files/a/:list"))
        assert merged.actions == {"read", "list"}
        left = await store.revoke(user.id, Rule.parse("files/a:read"))
        assert left == Rule("files", "a/", frozenset({"list"}))
        assert await store.revoke(user.id, Rule.parse("files/a:list")) is None
        assert await store.revoke(user.id, Rule.parse("files/a:list")) is False
        await store.grant(user.id, Rule.parse("files:all"))
        await store.delete_user(user.id)
        assert await store.all_rules() == {}
    finally:
        await store.close()


async def test_times_keep_their_precision(tmp_path, users_db):
    """Times are doubles on both (PostgreSQL's REAL is 4 bytes: a session would expire minutes early)."""
    store = await open_store(tmp_path, users_db)
    try:
        now = 1_790_000_000.123456
        user = await store.create_user("dora", None, False, now)
        assert (await store.get_user_by_id(user.id)).created_at == now
    finally:
        await store.close()


async def test_concurrent_failures_are_all_counted(tmp_path, users_db):
    """Read-modify-write under load from two stores (two workers): no failure is lost."""
    stores = [await open_store(tmp_path, users_db) for _ in range(2)]
    try:
        now = time.time()
        await asyncio.gather(
            *(s.record_failure("user:eve", now, now - 60, lambda n: 0.0) for s in stores for _ in range(10))
        )
        assert (await stores[0].failures(["user:eve"]))["user:eve"] == Failures(20, now, now)
    finally:
        for s in stores:
            await s.close()


async def test_duplicate_users_and_the_first_user_race(tmp_path, users_db):
    stores = [await open_store(tmp_path, users_db) for _ in range(3)]
    try:
        made = await asyncio.gather(*(s.create_first_user(f"admin{i}", "$h", True, 1.0) for i, s in enumerate(stores)))
        assert sum(u is not None for u in made) == 1
        from s3gate.auth.store import DuplicateUser

        with pytest.raises(DuplicateUser):
            await stores[0].create_user(next(u.name for u in made if u), None, False, 2.0)
        assert await stores[1].count_users() == 1
    finally:
        for s in stores:
            await s.close()


@pytest.mark.sqlite_only
async def test_sqlite_is_never_touched_on_the_loop(tmp_path):
    db = await SQLiteDatabase.open(tmp_path / "u.db")
    try:
        assert isinstance(db.conn, sqlite3.Connection)
    finally:
        await db.close()


@pytest.mark.sqlite_only
async def test_an_unreachable_postgresql_is_a_clear_error_without_the_password():
    with pytest.raises(ConfigError) as caught:
        await PostgresDatabase.open("postgresql://gate:hunter2@127.0.0.1:1/users", wait=1.0)
    assert "cannot connect" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert (
        redact_url("postgresql://u:p@h/d?password=x&sslmode=require")
        == "postgresql://u:***@h/d?password=***&sslmode=require"
    )


async def test_rules_and_public_rules_in_one_round_trip(tmp_path, users_db):
    store = await open_store(tmp_path, users_db)
    try:
        bob = await store.create_user("bob", None, False, 1.0)
        carol = await store.create_user("carol", None, False, 1.0)
        everyone = await store.create_user("*", None, False, 1.0)
        await store.grant(bob.id, Rule.parse("files/b:read"))
        await store.grant(carol.id, Rule.parse("files/c:read"))
        await store.grant(everyone.id, Rule.parse("pub:read,list"))
        assert await store.rules_with_public(bob.id) == ([Rule.parse("files/b:read")], [Rule.parse("pub:read,list")])
        assert await store.rules_with_public(None) == ([], [Rule.parse("pub:read,list")])
        assert await store.rules_with_public(everyone.id) == ([Rule.parse("pub:read,list")], [])
    finally:
        await store.close()
