"""Versioned schema migrations for the users database, one description for both engines.

Each step is a list of schema statements written for SQLite (``Database.ddl``
turns them into PostgreSQL's words: identity keys, double-precision times)
plus, when data must move, an async step written against ``Tx`` that runs
on both. ``migrate`` runs at start (and from every CLI command) inside one
writing transaction: when several workers or instances start at once, one
migrates and the others wait, then find nothing to do. DDL is transactional
in SQLite and PostgreSQL alike, so a failed step leaves the previous version
intact. The version lives in SQLite's ``PRAGMA user_version`` or in
PostgreSQL's ``s3gate_schema`` table. Never edit a released step: add one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import ConfigError
from .database import Database, Tx


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    data: Callable[[Tx], Awaitable[None]] | None = None  # runs after the statements


V1 = [
    """CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT,
        is_admin INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    )""",
    """CREATE TABLE rules (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        bucket TEXT NOT NULL,
        prefix TEXT NOT NULL,
        actions TEXT NOT NULL,
        UNIQUE (user_id, bucket, prefix)
    )""",
    """CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX sessions_user ON sessions (user_id)",
]


V2 = [
    "ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE users ADD COLUMN password_changed_at REAL",
    "UPDATE users SET password_changed_at = created_at WHERE password_hash IS NOT NULL",
    "ALTER TABLE sessions ADD COLUMN remote TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX sessions_expiry ON sessions (expires_at)",
    """CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        label TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        expires_at REAL,
        last_used_at REAL,
        revoked_at REAL,
        scoped INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX tokens_user ON tokens (user_id)",
    """CREATE TABLE token_rules (
        token_id TEXT NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
        bucket TEXT NOT NULL,
        prefix TEXT NOT NULL,
        actions TEXT NOT NULL,
        PRIMARY KEY (token_id, bucket, prefix)
    )""",
    """CREATE TABLE login_failures (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_at REAL NOT NULL,
        blocked_until REAL NOT NULL DEFAULT 0
    )""",
]

_ORDER = ("read", "list", "write", "delete")


def _folder(prefix: str) -> str:
    prefix = prefix.lstrip("/")
    return prefix + "/" if prefix and not prefix.endswith("/") else prefix


async def _v2_folders(tx: Tx) -> None:
    """Rule prefixes become folders.

    Version 1 stored a rule's prefix as typed, so 'docs' matched 'docs-private/'
    too. From version 2 a prefix is a folder: 'docs' is stored as 'docs/'. Rules
    that collapse onto the same folder are merged (actions united).
    """
    rows = await tx.all("SELECT user_id, bucket, prefix, actions FROM rules ORDER BY id")
    merged: dict[tuple[int, str, str], set[str]] = {}
    for user_id, bucket, prefix, actions in rows:
        acts = {a.strip() for a in actions.split(",") if a.strip() in _ORDER}
        merged.setdefault((user_id, bucket, _folder(prefix)), set()).update(acts)
    await tx.run("DELETE FROM rules")
    for (user_id, bucket, prefix), acts in merged.items():
        if acts:
            await tx.run(
                "INSERT INTO rules (user_id, bucket, prefix, actions) VALUES (?, ?, ?, ?)",
                (user_id, bucket, prefix, ",".join(a for a in _ORDER if a in acts)),
            )


V3 = [
    # A Basic password that verified, remembered so every worker can skip argon2
    # and the throttle for the client that proved it. ``digest`` is an HMAC of
    # the user id and password keyed by a secret kept outside this database
    # (data_dir/password-proof.key), so a copy of the database alone gives no
    # fast way to test guesses. ``generation`` is a digest of the password hash
    # the proof matched: any change of the hash voids it.
    """CREATE TABLE password_proofs (
        digest TEXT NOT NULL,
        address TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        generation TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (digest, address)
    )""",
    "CREATE INDEX password_proofs_user ON password_proofs (user_id, address)",
    "CREATE INDEX password_proofs_expiry ON password_proofs (expires_at)",
]


V4 = [
    # Resumable uploads (s3gate/http/resumable.py): one row per open S3
    # multipart upload a user may continue. The parts themselves are S3's.
    # user_id is NULL for anonymous sessions (authentication off).
    """CREATE TABLE upload_sessions (
        id TEXT PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
        bucket TEXT NOT NULL,
        object_key TEXT NOT NULL,
        size REAL NOT NULL, -- bytes, up to 5 TiB: PostgreSQL's INTEGER stops at 2 GiB, a double is exact
        part_size INTEGER NOT NULL,
        upload_id TEXT NOT NULL,
        file_name TEXT NOT NULL,
        file_mtime REAL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    )""",
    "CREATE INDEX upload_sessions_user ON upload_sessions (user_id)",
    "CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_at)",
]


V5 = [
    # The upload journal (s3gate/storage/journal.py) when several instances share
    # this database: one row per open multipart upload s3gate started.
    """CREATE TABLE upload_journal (
        upload_id TEXT PRIMARY KEY,
        bucket TEXT NOT NULL,
        object_key TEXT NOT NULL,
        started_at REAL NOT NULL,
        pid INTEGER,
        owner TEXT,
        journal TEXT
    )""",
    # Workers say they are alive here (a worker of another host cannot be looked up),
    # and until when to count them alive without another word (their own rounds, not the reader's).
    "CREATE TABLE gateway_workers (owner TEXT PRIMARY KEY, seen_at REAL NOT NULL, alive_until REAL NOT NULL)",
    # Turns between sweepers of every instance: whoever holds an unexpired lease.
    "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_at REAL NOT NULL)",
]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "users, rules, sessions", tuple(V1)),
    Migration(2, "disabled users, tokens, login counters; folder prefixes", tuple(V2), _v2_folders),
    Migration(3, "proven passwords shared by all workers", tuple(V3)),
    Migration(4, "resumable upload sessions", tuple(V4)),
    Migration(5, "the upload journal, workers and leases, shared by instances", tuple(V5)),
)
LATEST = MIGRATIONS[-1].version


async def migrate(db: Database, target: int = LATEST) -> list[int]:
    """Bring the schema to ``target``; return the versions applied."""
    async with db.transaction() as tx:
        version = await db.version(tx)
        if version > LATEST:
            raise ConfigError(
                f"users database schema is version {version}, newer than this s3gate knows ({LATEST}); upgrade s3gate"
            )
        applied = []
        for step in MIGRATIONS:
            if version < step.version <= target:
                for statement in step.statements:
                    await tx.run(db.ddl(statement))
                if step.data is not None:
                    await step.data(tx)
                await db.set_version(tx, step.version)
                applied.append(step.version)
    return applied


async def current_version(db: Database) -> int:
    async with db.connection() as c:
        return await db.version(c)
