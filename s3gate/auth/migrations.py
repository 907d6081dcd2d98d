"""Versioned schema migrations for the SQLite users database.

The version lives in SQLite's ``PRAGMA user_version``. ``migrate`` runs at
start (and from every CLI command), inside one ``BEGIN IMMEDIATE``
transaction: when several workers start at once, one migrates and the others
wait, then find nothing to do. DDL is transactional in SQLite, so a failed
step leaves the previous version intact. Never edit a released step: add one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None]


def _run(conn: sqlite3.Connection, statements: list[str]) -> None:
    # Not executescript(): it COMMITs first, which would break the transaction.
    for stmt in statements:
        conn.execute(stmt)


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


def _v1(conn: sqlite3.Connection) -> None:
    _run(conn, V1)


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


def _v2(conn: sqlite3.Connection) -> None:
    """Users can be disabled; tokens, token scopes and login counters; rule prefixes become folders.

    Version 1 stored a rule's prefix as typed, so 'docs' matched 'docs-private/'
    too. From version 2 a prefix is a folder: 'docs' is stored as 'docs/'. Rules
    that collapse onto the same folder are merged (actions united).
    """
    _run(conn, V2)
    rows = conn.execute("SELECT user_id, bucket, prefix, actions FROM rules ORDER BY id").fetchall()
    merged: dict[tuple[int, str, str], set[str]] = {}
    for user_id, bucket, prefix, actions in rows:
        acts = {a.strip() for a in actions.split(",") if a.strip() in _ORDER}
        merged.setdefault((user_id, bucket, _folder(prefix)), set()).update(acts)
    conn.execute("DELETE FROM rules")
    for (user_id, bucket, prefix), acts in merged.items():
        if acts:
            conn.execute(
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


def _v3(conn: sqlite3.Connection) -> None:
    _run(conn, V3)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "users, rules, sessions", _v1),
    Migration(2, "disabled users, tokens, login counters; folder prefixes", _v2),
    Migration(3, "proven passwords shared by all workers", _v3),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> list[int]:
    """Bring the schema to ``target``; return the versions applied. ``conn`` must be in autocommit mode."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = current_version(conn)
        if version > LATEST:
            raise ConfigError(
                f"users database schema is version {version}, newer than this s3gate knows ({LATEST}); upgrade s3gate"
            )
        applied = []
        for step in MIGRATIONS:
            if version < step.version <= target:
                step.apply(conn)
                conn.execute(f"PRAGMA user_version = {int(step.version)}")
                applied.append(step.version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied
