"""SQLite implementation of ``Store``: one connection, one thread, never the event loop.

Every call runs on a dedicated single thread that owns the connection, so
each method is a plain synchronous function with its own transaction and
two coroutines can never interleave inside one. WAL mode lets the gateway's
workers and the CLI use the file at the same time; ``busy_timeout`` makes a
writer wait (on that thread) instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..private import ensure_private_file
from .migrations import current_version, migrate
from .rules import ACTIONS, Rule, format_actions
from .store import ANONYMOUS, DuplicateUser, Failures, ProofLookup, Session, Store, Token, User, database_path

T = TypeVar("T")

_USER_COLS = "id, name, password_hash, is_admin, disabled, created_at, password_changed_at"
_TOKEN_COLS = "t.id, t.user_id, u.name, t.label, t.created_at, t.expires_at, t.last_used_at, t.revoked_at, t.scoped"


def _actions(text: str) -> frozenset[str]:
    return frozenset(a for a in text.split(",") if a in ACTIONS)


def _user(row: tuple | None) -> User | None:
    if row is None:
        return None
    return User(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5], row[6])


@contextlib.contextmanager
def _tx(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL (persistent: usually another opener already has).

    Switching needs an exclusive lock, and while another connection is writing
    (a worker migrating the new file) SQLite refuses at once with "database is
    locked" instead of waiting (waiting could deadlock): retry for a while.
    """
    for attempt in range(100):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)  # the store's own thread, never the event loop


def connect(path: Path) -> sqlite3.Connection:
    """A migrated connection in autocommit mode (used by the store's thread and by tests)."""
    ensure_private_file(path)  # the -wal and -shm files inherit this mode
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA busy_timeout = 10000")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteStore(Store):
    def __init__(self, path: Path):
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3gate-users-db")
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path) -> SQLiteStore:
        store = cls(path)
        try:
            await store._call(store._open)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    def _open(self) -> None:
        self._conn = connect(self.path)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("users store is closed")
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)
        self._executor.shutdown(wait=False)

    async def schema_version(self) -> int:
        return await self._call(lambda: current_version(self.db))

    # -- users ---------------------------------------------------------------
    async def count_users(self) -> int:
        def run() -> int:
            return self.db.execute("SELECT count(*) FROM users WHERE name != ?", (ANONYMOUS,)).fetchone()[0]

        return await self._call(run)

    async def get_user(self, name: str) -> User | None:
        def run() -> User | None:
            return _user(self.db.execute(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)).fetchone())

        return await self._call(run)

    async def get_user_by_id(self, user_id: int) -> User | None:
        def run() -> User | None:
            return _user(self.db.execute(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,)).fetchone())

        return await self._call(run)

    async def list_users(self) -> list[User]:
        def run() -> list[User]:
            rows = self.db.execute(f"SELECT {_USER_COLS} FROM users ORDER BY name").fetchall()
            return [u for u in map(_user, rows) if u is not None]

        return await self._call(run)

    def _insert_user(self, name: str, password_hash: str | None, admin: bool, now: float) -> User:
        try:
            cur = self.db.execute(
                "INSERT INTO users (name, password_hash, is_admin, created_at, password_changed_at) VALUES (?, ?, ?, ?, ?)",
                (name, password_hash, int(admin), now, now if password_hash else None),
            )
        except sqlite3.IntegrityError:
            raise DuplicateUser(name) from None
        return User(int(cur.lastrowid or 0), name, password_hash, admin, False, now, now if password_hash else None)

    async def create_user(self, name: str, password_hash: str | None, admin: bool, now: float) -> User:
        return await self._call(self._insert_user, name, password_hash, admin, now)

    async def create_first_user(self, name: str, password_hash: str, admin: bool, now: float) -> User | None:
        def run() -> User | None:
            with _tx(self.db):
                count = self.db.execute("SELECT count(*) FROM users WHERE name != ?", (ANONYMOUS,)).fetchone()[0]
                if count:
                    return None
                return self._insert_user(name, password_hash, admin, now)

        return await self._call(run)

    async def update_password(self, user_id: int, password_hash: str | None, now: float) -> None:
        def run() -> None:
            self.db.execute(
                "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                (password_hash, now, user_id),
            )

        await self._call(run)

    async def set_flags(self, user_id: int, *, disabled: bool | None = None, admin: bool | None = None) -> None:
        def run() -> None:
            with _tx(self.db):
                if disabled is not None:
                    self.db.execute("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
                if admin is not None:
                    self.db.execute("UPDATE users SET is_admin = ? WHERE id = ?", (int(admin), user_id))

        await self._call(run)

    async def delete_user(self, user_id: int) -> None:
        def run() -> None:
            self.db.execute("DELETE FROM users WHERE id = ?", (user_id,))  # rules, tokens, sessions cascade

        await self._call(run)

    # -- rules ---------------------------------------------------------------
    async def rules_for(self, user_id: int) -> list[Rule]:
        def run() -> list[Rule]:
            rows = self.db.execute(
                "SELECT bucket, prefix, actions FROM rules WHERE user_id = ? ORDER BY bucket, prefix", (user_id,)
            ).fetchall()
            return [Rule(b, p, _actions(a)) for b, p, a in rows]

        return await self._call(run)

    async def all_rules(self) -> dict[int, list[Rule]]:
        def run() -> dict[int, list[Rule]]:
            out: dict[int, list[Rule]] = {}
            for uid, b, p, a in self.db.execute(
                "SELECT user_id, bucket, prefix, actions FROM rules ORDER BY bucket, prefix"
            ):
                out.setdefault(uid, []).append(Rule(b, p, _actions(a)))
            return out

        return await self._call(run)

    async def grant(self, user_id: int, rule: Rule) -> Rule:
        def run() -> Rule:
            with _tx(self.db):
                row = self.db.execute(
                    "SELECT actions FROM rules WHERE user_id = ? AND bucket = ? AND prefix = ?",
                    (user_id, rule.bucket, rule.prefix),
                ).fetchone()
                acts = rule.actions | (_actions(row[0]) if row else frozenset())
                self.db.execute(
                    "INSERT INTO rules (user_id, bucket, prefix, actions) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (user_id, bucket, prefix) DO UPDATE SET actions = excluded.actions",
                    (user_id, rule.bucket, rule.prefix, _store_actions(acts)),
                )
            return Rule(rule.bucket, rule.prefix, acts)

        return await self._call(run)

    async def revoke(self, user_id: int, rule: Rule) -> Rule | bool | None:
        def run() -> Rule | bool | None:
            with _tx(self.db):
                row = self.db.execute(
                    "SELECT id, actions FROM rules WHERE user_id = ? AND bucket = ? AND prefix = ?",
                    (user_id, rule.bucket, rule.prefix),
                ).fetchone()
                if row is None:
                    return False
                left = _actions(row[1]) - rule.actions
                if not left:
                    self.db.execute("DELETE FROM rules WHERE id = ?", (row[0],))
                    return None
                self.db.execute("UPDATE rules SET actions = ? WHERE id = ?", (_store_actions(left), row[0]))
                return Rule(rule.bucket, rule.prefix, left)

        return await self._call(run)

    # -- tokens --------------------------------------------------------------
    async def create_token(self, token: Token, digest: str) -> None:
        def run() -> None:
            with _tx(self.db):
                self.db.execute(
                    "INSERT INTO tokens (id, token_hash, user_id, label, created_at, expires_at, scoped) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        token.id,
                        digest,
                        token.user_id,
                        token.label,
                        token.created_at,
                        token.expires_at,
                        int(token.scope is not None),
                    ),
                )
                for r in token.scope or ():
                    self.db.execute(
                        "INSERT INTO token_rules (token_id, bucket, prefix, actions) VALUES (?, ?, ?, ?)",
                        (token.id, r.bucket, r.prefix, _store_actions(r.actions)),
                    )

        await self._call(run)

    def _token(self, row: tuple | None) -> Token | None:
        if row is None:
            return None
        scope = None
        if row[8]:
            scope = tuple(
                Rule(b, p, _actions(a))
                for b, p, a in self.db.execute(
                    "SELECT bucket, prefix, actions FROM token_rules WHERE token_id = ? ORDER BY bucket, prefix",
                    (row[0],),
                )
            )
        # Times as stored: a hand-edited or older row may hold anything (text, inf);
        # a bad expiry counts as already past, so the token fails closed.
        created, expires, used, revoked = (_time(v, 0.0) for v in row[4:8])
        return Token(row[0], row[1], row[2], row[3], created or 0.0, expires, used, revoked, scope)

    async def token_by_digest(self, digest: str) -> Token | None:
        def run() -> Token | None:
            row = self.db.execute(
                f"SELECT {_TOKEN_COLS} FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
                (digest,),
            ).fetchone()
            return self._token(row)

        return await self._call(run)

    async def get_token(self, token_id: str) -> Token | None:
        def run() -> Token | None:
            row = self.db.execute(
                f"SELECT {_TOKEN_COLS} FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?", (token_id,)
            ).fetchone()
            return self._token(row)

        return await self._call(run)

    async def list_tokens(self, user_id: int | None = None) -> list[Token]:
        def run() -> list[Token]:
            sql = f"SELECT {_TOKEN_COLS} FROM tokens t JOIN users u ON u.id = t.user_id"
            args: tuple = ()
            if user_id is not None:
                sql += " WHERE t.user_id = ?"
                args = (user_id,)
            rows = self.db.execute(sql + " ORDER BY u.name, t.created_at", args).fetchall()
            return [t for t in map(self._token, rows) if t is not None]

        return await self._call(run)

    async def revoke_token(self, token_id: str, now: float) -> bool:
        def run() -> bool:
            cur = self.db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id)
            )
            return cur.rowcount > 0

        return await self._call(run)

    async def touch_token(self, token_id: str, now: float) -> None:
        def run() -> None:
            self.db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (now, token_id))

        await self._call(run)

    # -- sessions ------------------------------------------------------------
    async def create_session(self, digest: str, session: Session) -> None:
        def run() -> None:
            self.db.execute(
                "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, remote) VALUES (?, ?, ?, ?, ?)",
                (digest, session.user_id, session.created_at, session.expires_at, session.remote),
            )

        await self._call(run)

    async def session_by_digest(self, digest: str) -> Session | None:
        def run() -> Session | None:
            row = self.db.execute(
                "SELECT user_id, created_at, expires_at, remote FROM sessions WHERE id_hash = ?", (digest,)
            ).fetchone()
            return Session(*row) if row else None

        return await self._call(run)

    async def delete_session(self, digest: str) -> bool:
        def run() -> bool:
            return self.db.execute("DELETE FROM sessions WHERE id_hash = ?", (digest,)).rowcount > 0

        return await self._call(run)

    async def delete_sessions(self, user_id: int) -> int:
        def run() -> int:
            return self.db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount

        return await self._call(run)

    async def count_sessions(self, user_id: int, now: float) -> int:
        def run() -> int:
            return self.db.execute(
                "SELECT count(*) FROM sessions WHERE user_id = ? AND expires_at > ?", (user_id, now)
            ).fetchone()[0]

        return await self._call(run)

    # -- proven passwords -------------------------------------------------------
    async def find_proof(self, user_id: int, address: str, digest: str, generation: str, now: float) -> ProofLookup:
        def run() -> ProofLookup:
            rows = self.db.execute(
                "SELECT digest, expires_at FROM password_proofs "
                "WHERE user_id = ? AND address = ? AND generation = ? AND expires_at > ?",
                (user_id, address, generation, now),
            ).fetchall()
            match = next((exp for d, exp in rows if hmac.compare_digest(d, digest)), None)
            return ProofLookup(match, bool(rows))

        return await self._call(run)

    async def save_proof(self, user_id: int, address: str, digest: str, generation: str, expires_at: float) -> None:
        def run() -> None:
            self.db.execute(
                "INSERT INTO password_proofs (digest, address, user_id, generation, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (digest, address) DO UPDATE SET user_id = excluded.user_id, "
                "generation = excluded.generation, expires_at = excluded.expires_at",
                (digest, address, user_id, generation, expires_at),
            )

        await self._call(run)

    async def delete_proofs(self, user_id: int) -> int:
        def run() -> int:
            return self.db.execute("DELETE FROM password_proofs WHERE user_id = ?", (user_id,)).rowcount

        return await self._call(run)

    # -- brute-force counters -------------------------------------------------
    async def failures(self, keys: list[str]) -> dict[str, Failures]:
        def run() -> dict[str, Failures]:
            marks = ",".join("?" * len(keys))
            rows = self.db.execute(
                f"SELECT key, failures, last_at, blocked_until FROM login_failures WHERE key IN ({marks})", keys
            ).fetchall()
            return {k: Failures(n, last, until) for k, n, last, until in rows}

        return await self._call(run) if keys else {}

    async def record_failure(
        self, key: str, now: float, forget_before: float, wait_for: Callable[[int], float]
    ) -> Failures:
        def run() -> Failures:
            with _tx(self.db):
                row = self.db.execute(
                    "SELECT failures, last_at, blocked_until FROM login_failures WHERE key = ?", (key,)
                ).fetchone()
                count = 1 if row is None or row[1] < forget_before else row[0] + 1
                until = max(now + wait_for(count), row[2] if row else 0.0)
                self.db.execute(
                    "INSERT INTO login_failures (key, failures, last_at, blocked_until) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, last_at = excluded.last_at, "
                    "blocked_until = excluded.blocked_until",
                    (key, count, now, until),
                )
            return Failures(count, now, until)

        return await self._call(run)

    async def clear_failures(self, key: str) -> bool:
        def run() -> bool:
            return self.db.execute("DELETE FROM login_failures WHERE key = ?", (key,)).rowcount > 0

        return await self._call(run)

    async def purge(self, now: float, forget_before: float) -> None:
        def run() -> None:
            with _tx(self.db):
                self.db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
                self.db.execute("DELETE FROM password_proofs WHERE expires_at <= ?", (now,))
                self.db.execute(
                    "DELETE FROM login_failures WHERE last_at < ? AND blocked_until <= ?", (forget_before, now)
                )

        await self._call(run)


def _time(value: object, bad: float) -> float | None:
    """A REAL column as a float; None stays None, anything unreadable or NaN becomes ``bad``."""
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return bad
    return bad if math.isnan(number) else number


def _store_actions(actions: frozenset[str]) -> str:
    text = format_actions(actions)
    return ",".join(ACTIONS) if text == "all" else text


async def open_store(data_dir: str | Path, users_db: str) -> Store:
    """Open (creating and migrating if needed) the store the ``users_db`` setting names."""
    return await SQLiteStore.open(database_path(data_dir, users_db))
