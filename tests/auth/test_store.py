"""The SQLite store: migrations from empty and from version 1, file modes, concurrency."""

import asyncio
import os
import sqlite3
import stat
import time

import pytest

from s3gate.auth import migrations
from s3gate.auth.rules import Rule
from s3gate.auth.sqlite import SQLiteStore, connect, open_store
from s3gate.errors import ConfigError


def tables(path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_migrates_an_empty_database_to_the_latest(tmp_path):
    path = tmp_path / "d" / "users.db"
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == migrations.LATEST == 3
        expected = {"users", "rules", "sessions", "tokens", "token_rules", "login_failures", "password_proofs"}
        assert expected <= tables(path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert await store.count_users() == 0
    finally:
        await store.close()
    # Opening again is a no-op.
    store = await SQLiteStore.open(path)
    assert await store.schema_version() == 3
    await store.close()


def make_v1(path):
    """A database exactly as version 1 left it, with data."""
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrations.migrate(conn, target=1) == [1]
    now = time.time()
    conn.execute("INSERT INTO users (id, name, password_hash, is_admin, created_at) VALUES (1, 'alice', '$argon2id$x', 0, ?)", (now,))
    conn.execute("INSERT INTO users (id, name, password_hash, is_admin, created_at) VALUES (2, 'root', '$argon2id$y', 1, ?)", (now,))
    # v1 kept prefixes as typed: 'docs' and 'docs/' were two rules.
    conn.execute("INSERT INTO rules (user_id, bucket, prefix, actions) VALUES (1, 'files', 'docs', 'read')")
    conn.execute("INSERT INTO rules (user_id, bucket, prefix, actions) VALUES (1, 'files', 'docs/', 'list,write')")
    conn.execute("INSERT INTO rules (user_id, bucket, prefix, actions) VALUES (1, 'photos', '', 'read')")
    conn.execute("INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES ('h', 1, ?, ?)", (now, now + 60))
    conn.close()
    return now


async def test_migrates_from_version_1_keeping_data(tmp_path):
    path = tmp_path / "users.db"
    created = await asyncio.to_thread(make_v1, path)  # set-up on a thread: the loop is the gateway's
    assert "tokens" not in tables(path)
    store = await SQLiteStore.open(path)
    try:
        assert await store.schema_version() == 3
        alice = await store.get_user("alice")
        assert alice is not None and not alice.disabled and not alice.admin
        assert alice.password_hash == "$argon2id$x"
        assert alice.password_changed_at == pytest.approx(created)
        assert (await store.get_user("root")).admin
        rules = await store.rules_for(alice.id)
        # 'docs' became the folder 'docs/' and merged with the existing 'docs/' rule.
        assert rules == [Rule("files", "docs/", frozenset({"read", "list", "write"})), Rule("photos", "", frozenset({"read"}))]
        session = await store.session_by_digest("h")
        assert session is not None and session.remote == ""
        assert await store.list_tokens() == []
    finally:
        await store.close()


async def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "users.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ConfigError, match="newer"):
        await SQLiteStore.open(path)


def test_a_failed_migration_leaves_the_old_version(tmp_path, monkeypatch):
    path = tmp_path / "users.db"
    make_v1(path)

    def broken(conn):
        conn.execute("ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", (migrations.MIGRATIONS[0], migrations.Migration(2, "x", broken)))
    with pytest.raises(RuntimeError):
        connect(path).close()
    with sqlite3.connect(path) as conn:
        assert migrations.current_version(conn) == 1
        cols = {r[1] for r in conn.execute("PRAGMA table_info(users)")}
    assert "disabled" not in cols


async def test_concurrent_openers_migrate_once(tmp_path):
    path = tmp_path / "users.db"
    stores = await asyncio.gather(*(SQLiteStore.open(path) for _ in range(4)))
    for s in stores:
        assert await s.schema_version() == 3
        await s.close()


async def test_unsupported_database_url(tmp_path):
    with pytest.raises(ConfigError, match="postgresql"):
        await open_store(tmp_path, "postgresql://db/users")


async def test_grant_merges_and_revoke_subtracts(tmp_path):
    store = await SQLiteStore.open(tmp_path / "u.db")
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
