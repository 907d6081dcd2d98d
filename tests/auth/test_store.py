"""The users store on both databases: migrations from empty and from version 1, concurrency, file modes."""

import asyncio
import os
import socket
import sqlite3
import stat
import time

import pytest

from s3gate.auth import migrations
from s3gate.auth.database import PostgresDatabase, SQLiteDatabase, open_database, redact_url
from s3gate.auth.rules import Rule
from s3gate.auth.service import InvalidToken, token_json
from s3gate.auth.sql import SQLStore, open_store
from s3gate.auth.store import Failures, UploadSession
from s3gate.errors import ConfigError

from .conftest import PASSWORD

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


@pytest.mark.sqlite_only
async def test_the_sqlite_file_is_in_wal_mode_even_when_first_opened_under_a_writer(tmp_path):
    """Workers and the CLI share the file in WAL mode (a reader never waits for the writer). Switching
    to WAL needs a moment without a writer: an opener that meets one waits for it instead of failing."""
    path = tmp_path / "users.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
    store = await open_store(tmp_path, str(path))
    try:
        assert await store.schema_version() == migrations.LATEST
    finally:
        await store.close()
        other.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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


async def test_version_1_prefixes_become_folders(tmp_path, users_db):
    """What version 1 kept as typed: leading '/' dropped, a trailing one added, rules that meet on
    one folder merged; unknown action names dropped, and a rule left with none is gone."""
    db = await open_database(tmp_path, users_db)
    assert await migrations.migrate(db, target=1) == [1]
    async with db.connection() as c:
        await c.run("INSERT INTO users (id, name, password_hash, is_admin, created_at) VALUES (1, 'alice', NULL, 0, 0)")
        for prefix, actions in (
            ("/docs", "write, read"),
            ("Xrays", "list"),
            ("//Xrays/", "delete,fly"),
            ("old", "fly"),
        ):
            await c.run(
                "INSERT INTO rules (user_id, bucket, prefix, actions) VALUES (1, 'files', ?, ?)", (prefix, actions)
            )
    store = await SQLStore.open(db)
    try:
        rules = await store.rules_for(1)
        assert {r.prefix: r.actions for r in rules} == {"docs/": {"read", "write"}, "Xrays/": {"list", "delete"}}
        assert {r.bucket for r in rules} == {"files"}
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


@pytest.mark.sqlite_only  # no database reached
async def test_an_unknown_database_url_is_refused_without_its_password(tmp_path):
    with pytest.raises(ConfigError) as caught:
        await open_store(tmp_path, "mysql://gate:hunter2@db.example.org/users")
    assert "mysql://" in str(caught.value) and "hunter2" not in str(caught.value)


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
async def test_a_closed_store_leaves_everything_in_its_file(tmp_path):
    """After a clean stop the users database is one file again (no -wal holding the last changes):
    what an operator copies or moves while s3gate is down."""
    store = await open_store(tmp_path, "users.db")
    await store.create_user("alice", None, False, 1.0)
    await store.close()
    assert not (tmp_path / "users.db-wal").exists()
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "users.db").read_bytes())
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("SELECT name FROM users").fetchall() == [("alice",)]
    finally:
        conn.close()


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


@pytest.mark.sqlite_only  # no database reached
async def test_an_unreachable_users_server_is_refused_with_the_drivers_reason():
    """The operator reads why (here: nothing listens on the port), not only that it failed."""
    with pytest.raises(ConfigError) as caught:
        await PostgresDatabase.open("postgresql://gate:hunter2@127.0.0.1:1/users", wait=1.0)
    assert 'connection to server at "127.0.0.1", port 1 failed: Connection refused' in str(caught.value)


@pytest.mark.sqlite_only  # no database reached
async def test_a_users_server_port_that_never_answers_is_an_error_not_a_hang():
    """Something accepts the connection and never speaks (a firewall, another service): s3gate
    still stops with the reason, after the pool's wait and one 5 s connection attempt."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://gate:hunter2@127.0.0.1:{silent.getsockname()[1]}/users"
        with pytest.raises(ConfigError) as caught:
            await asyncio.wait_for(PostgresDatabase.open(url, wait=0.5), 30)
    assert "connection timeout expired" in str(caught.value)
    assert "hunter2" not in str(caught.value)


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


async def test_a_token_has_its_owners_rules_and_the_public_ones(service):
    """token_login reads the owner's rules and the '*' user's in one trip: a token request gets both."""
    await service.add_user("bob", PASSWORD)
    await service.grant("bob", Rule.parse("files/b:read"))
    await service.grant("*", Rule.parse("pub:read,list"))
    secret, _ = await service.create_token("bob")
    who = await service.authenticate_token(secret)
    assert who.rules == (Rule.parse("files/b:read"), Rule.parse("pub:read,list"))
    assert who.may("read", "pub", "x") and who.may("list", "pub")
    assert who.may("read", "files", "b/x") and not who.may("read", "files", "c/x")


async def test_an_unscoped_token_is_listed_with_full_rights(service, clock):
    """Listed (API, `tokens list`, `tokens revoke`): no scope means the owner's full rights, not an empty scope."""
    await service.add_user("bob", PASSWORD)
    await service.grant("bob", Rule.parse("files:read"))
    _, full = await service.create_token("bob")
    _, narrow = await service.create_token("bob", scope=[Rule.parse("files/docs:read")])
    listed = {t.id: token_json(t, clock())["scope"] for t in await service.list_tokens("bob")}
    assert listed == {full.id: None, narrow.id: ["files/docs/:read"]}
    assert (await service.revoke_token(full.id)).scope is None


async def test_a_stored_nan_time_fails_closed(service, clock):
    """NaN compares false with every time: read as is, the token would never expire. It reads as the epoch."""
    await service.add_user("bob", PASSWORD)
    secret, _ = await service.create_token("bob", expires_in=3600)
    await service.store.db.run("UPDATE tokens SET expires_at = 'NaN', created_at = 'NaN'")  # a hand edit
    with pytest.raises(InvalidToken):
        await service.authenticate_token(secret)
    [listed] = await service.list_tokens("bob")
    shown = token_json(listed, clock())
    assert (shown["created"], shown["expires"], shown["state"]) == (
        "1970-01-01T00:00:00+00:00",
        "1970-01-01T00:00:00+00:00",
        "expired",
    )


async def test_a_damaged_upload_session_reads_as_long_expired_and_matches_no_file(tmp_path, users_db):
    """The page resumes with a re-picked file whose mtime matches, or with any file when there is none (null)."""
    store = await open_store(tmp_path, users_db)
    try:
        session = UploadSession("s" * 20, None, "b", "k", 10, 5, "up", "a.bin", 1.5, 10.0, 20.0)
        await store.create_upload_session(session)
        await store.db.run("UPDATE upload_sessions SET file_mtime = 'NaN', created_at = 'NaN', expires_at = 'NaN'")
        read = await store.get_upload_session(session.id)
        assert (read.file_mtime, read.created_at, read.expires_at) == (0.0, 0.0, 0.0)
    finally:
        await store.close()


async def test_ending_a_session_tells_whether_there_was_one(service):
    """Logout answers {"logged_out": false}, and writes no audit line, for a session already gone."""
    await service.add_user("bob", PASSWORD)
    who = await service.principal_for(await service.store.get_user("bob"), "password")
    sid, _ = await service.start_session(who, "127.0.0.1")
    assert await service.session_principal(sid) is not None
    assert await service.end_session(sid) is True
    assert await service.end_session(sid) is False
    assert await service.session_principal(sid) is None


async def test_failures_are_forgotten_after_the_window_and_never_shorten_a_block(tmp_path, users_db):
    store = await open_store(tmp_path, users_db)
    window = 60.0

    async def fail(now: float) -> float:
        counted = await store.record_failure("user:eve", now, now - window, lambda n: 10.0 * n)
        return counted.blocked_until

    try:
        t0 = 1_790_000_000.0
        assert await fail(t0) == t0 + 10
        # A failure exactly one window old still counts (purge keeps its row until then, too).
        assert await fail(t0 + window) == t0 + window + 20
        # The last failure is older than the window: counting starts over (though its block outlived the window's start).
        t1 = t0 + 2 * window + 1
        assert await fail(t1) == t1 + 10
        # A worker whose clock is 15 s behind counts the next one: the block it finds stays.
        assert await fail(t1 - 15) == t1 + 10
        assert (await store.failures(["user:eve"]))["user:eve"] == Failures(2, t1 - 15, t1 + 10)
    finally:
        await store.close()


async def test_the_shared_upload_journal_reads_back_what_was_written(tmp_path, users_db):
    """What every instance's sweeper reads: all fields (its own journal's id, the start for the stale sweep)."""
    store = await open_store(tmp_path, users_db)
    try:
        entry = {
            "upload_id": "up-1",
            "bucket": "b",
            "key": "k/1.bin",
            "started": 1_790_000_000.5,
            "pid": 4242,
            "owner": "boot/4242/1",
            "journal": "0123abcd",
        }
        await store.journal_add(entry)
        await store.journal_add({**entry, "bucket": "other"})  # the same upload again (unclaim): the first stays
        assert await store.journal_entries() == [entry]
        assert await store.journal_has("up-1") is True
        assert await store.journal_remove("up-1") is True
        assert await store.journal_has("up-1") is False
        assert await store.journal_remove("up-1") is False  # claimed by another sweeper
        assert await store.journal_entries() == []
    finally:
        await store.close()


async def test_housekeeping_keeps_the_workers_that_are_alive(tmp_path, users_db):
    """purge runs at every login: it forgets workers silent for a day, never a live one (its uploads look orphaned)."""
    store = await open_store(tmp_path, users_db)
    try:
        now = 1_790_000_000.0
        await store.worker_alive("boot/1/live", now - 60, now + 600)
        await store.worker_alive("boot/2/gone", now - 3 * 86400, now - 3 * 86400 + 600)
        await store.purge(now, now - 3600)
        assert await store.workers_alive(now) == {"boot/1/live"}
    finally:
        await store.close()


async def test_a_worker_holds_at_most_ten_postgresql_connections(tmp_path, postgres):
    """README: 8 for the users store, 2 for the upload journal; operators size max_connections by it."""
    url = postgres.create_database()
    stores = [await open_store(tmp_path, url), await open_store(tmp_path, url, pool_size=2)]
    try:
        assert [s.db._pool.max_size for s in stores] == [8, 2]
    finally:
        for s in stores:
            await s.close()


async def test_a_new_user_comes_back_as_stored(service):
    """`users add` prints the role and audits detail "admin" from the user the store returns."""
    made = [await service.add_user("root", PASSWORD, admin=True), await service.add_user("bot", None)]
    assert made == [await service.store.get_user("root"), await service.store.get_user("bot")]
    assert [(u.admin, u.disabled) for u in made] == [(True, False), (False, False)]
