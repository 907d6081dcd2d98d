"""``Store`` in SQL, written once for SQLite and PostgreSQL (see ``database.py``).

Every statement uses ``?`` placeholders and SQL both engines accept
(``ON CONFLICT … DO UPDATE``, ``RETURNING``). A method that reads and then
writes runs in ``db.transaction()``, which both engines serialise against
every other writer, so the read stays true until the write.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path
from typing import Any

from .database import Database, Tx, open_database
from .migrations import current_version, migrate
from .rules import ACTIONS, Rule, format_actions
from .store import (
    ANONYMOUS,
    DuplicateUser,
    Failures,
    ProofLookup,
    Session,
    Store,
    Token,
    TokenLogin,
    UploadSession,
    User,
)

_USER_COLS = "id, name, password_hash, is_admin, disabled, created_at, password_changed_at"
_UPLOAD_COLS = (
    "id, user_id, bucket, object_key, size, part_size, upload_id, file_name, file_mtime, created_at, expires_at"
)
_TOKEN_COLS = "t.id, t.user_id, u.name, t.label, t.created_at, t.expires_at, t.last_used_at, t.revoked_at, t.scoped"


def _actions(text: str) -> frozenset[str]:
    return frozenset(a for a in text.split(",") if a in ACTIONS)


def _store_actions(actions: frozenset[str]) -> str:
    text = format_actions(actions)
    return ",".join(ACTIONS) if text == "all" else text


def _user(row: tuple | None) -> User | None:
    if row is None:
        return None
    return User(row[0], row[1], row[2], bool(row[3]), bool(row[4]), row[5], row[6])


def _token(row: tuple | None, scope_rows: list[tuple] | None) -> Token | None:
    """A token row (``_TOKEN_COLS``); scope_rows: its token_rules when it is scoped."""
    if row is None:
        return None
    scope = None if scope_rows is None else tuple(Rule(b, p, _actions(a)) for b, p, a in scope_rows)
    # Times as stored: a hand-edited or older row may hold anything (text, inf);
    # a bad expiry counts as already past, so the token fails closed.
    created, expires, used, revoked = (_time(v, 0.0) for v in row[4:8])
    return Token(row[0], row[1], row[2], row[3], created or 0.0, expires, used, revoked, scope)


def _time(value: object, bad: float) -> float | None:
    """A time column as a float; None stays None, anything unreadable or NaN becomes ``bad``."""
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return bad
    return bad if math.isnan(number) else number


class SQLStore(Store):
    def __init__(self, db: Database):
        self.db = db

    @classmethod
    async def open(cls, db: Database) -> SQLStore:
        """Migrate ``db`` (creating the schema if empty) and wrap it; closes ``db`` on failure."""
        try:
            await migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def schema_version(self) -> int:
        return await current_version(self.db)

    # -- users ---------------------------------------------------------------
    async def count_users(self) -> int:
        row = await self.db.one("SELECT count(*) FROM users WHERE name != ?", (ANONYMOUS,))
        return int(row[0]) if row else 0

    async def get_user(self, name: str) -> User | None:
        return _user(await self.db.one(f"SELECT {_USER_COLS} FROM users WHERE name = ?", (name,)))

    async def get_user_by_id(self, user_id: int) -> User | None:
        return _user(await self.db.one(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (user_id,)))

    async def list_users(self) -> list[User]:
        rows = await self.db.all(f"SELECT {_USER_COLS} FROM users ORDER BY name")
        return [u for u in map(_user, rows) if u is not None]

    async def _insert_user(self, tx: Tx, name: str, password_hash: str | None, admin: bool, now: float) -> User:
        changed = now if password_hash else None
        try:
            row = await tx.one(
                "INSERT INTO users (name, password_hash, is_admin, created_at, password_changed_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (name, password_hash, int(admin), now, changed),
            )
        except self.db.integrity_error:
            raise DuplicateUser(name) from None
        return User(int(row[0]) if row else 0, name, password_hash, admin, False, now, changed)

    async def create_user(self, name: str, password_hash: str | None, admin: bool, now: float) -> User:
        async with self.db.connection() as c:
            return await self._insert_user(c, name, password_hash, admin, now)

    async def create_first_user(self, name: str, password_hash: str, admin: bool, now: float) -> User | None:
        async with self.db.transaction() as tx:
            row = await tx.one("SELECT count(*) FROM users WHERE name != ?", (ANONYMOUS,))
            if row and row[0]:
                return None
            return await self._insert_user(tx, name, password_hash, admin, now)

    async def update_password(self, user_id: int, password_hash: str | None, now: float) -> None:
        await self.db.run(
            "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?", (password_hash, now, user_id)
        )

    async def set_flags(self, user_id: int, *, disabled: bool | None = None, admin: bool | None = None) -> None:
        async with self.db.transaction() as tx:
            if disabled is not None:
                await tx.run("UPDATE users SET disabled = ? WHERE id = ?", (int(disabled), user_id))
            if admin is not None:
                await tx.run("UPDATE users SET is_admin = ? WHERE id = ?", (int(admin), user_id))

    async def delete_user(self, user_id: int) -> None:
        await self.db.run("DELETE FROM users WHERE id = ?", (user_id,))  # rules, tokens, sessions cascade

    # -- rules ---------------------------------------------------------------
    async def rules_for(self, user_id: int) -> list[Rule]:
        rows = await self.db.all(
            "SELECT bucket, prefix, actions FROM rules WHERE user_id = ? ORDER BY bucket, prefix", (user_id,)
        )
        return [Rule(b, p, _actions(a)) for b, p, a in rows]

    async def all_rules(self) -> dict[int, list[Rule]]:
        out: dict[int, list[Rule]] = {}
        for uid, b, p, a in await self.db.all(
            "SELECT user_id, bucket, prefix, actions FROM rules ORDER BY bucket, prefix"
        ):
            out.setdefault(uid, []).append(Rule(b, p, _actions(a)))
        return out

    async def rules_with_public(self, user_id: int | None) -> tuple[list[Rule], list[Rule]]:
        rows = await self.db.all(
            "SELECT r.user_id, r.bucket, r.prefix, r.actions FROM rules r JOIN users u ON u.id = r.user_id "
            "WHERE u.name = ? OR r.user_id = ? ORDER BY r.bucket, r.prefix",
            (ANONYMOUS, -1 if user_id is None else user_id),
        )
        mine = [Rule(b, p, _actions(a)) for uid, b, p, a in rows if uid == user_id]
        public = [Rule(b, p, _actions(a)) for uid, b, p, a in rows if uid != user_id]
        return mine, public

    async def grant(self, user_id: int, rule: Rule) -> Rule:
        async with self.db.transaction() as tx:
            row = await tx.one(
                "SELECT actions FROM rules WHERE user_id = ? AND bucket = ? AND prefix = ?",
                (user_id, rule.bucket, rule.prefix),
            )
            acts = rule.actions | (_actions(row[0]) if row else frozenset())
            await tx.run(
                "INSERT INTO rules (user_id, bucket, prefix, actions) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_id, bucket, prefix) DO UPDATE SET actions = excluded.actions",
                (user_id, rule.bucket, rule.prefix, _store_actions(acts)),
            )
        return Rule(rule.bucket, rule.prefix, acts)

    async def revoke(self, user_id: int, rule: Rule) -> Rule | bool | None:
        async with self.db.transaction() as tx:
            row = await tx.one(
                "SELECT id, actions FROM rules WHERE user_id = ? AND bucket = ? AND prefix = ?",
                (user_id, rule.bucket, rule.prefix),
            )
            if row is None:
                return False
            left = _actions(row[1]) - rule.actions
            if not left:
                await tx.run("DELETE FROM rules WHERE id = ?", (row[0],))
                return None
            await tx.run("UPDATE rules SET actions = ? WHERE id = ?", (_store_actions(left), row[0]))
            return Rule(rule.bucket, rule.prefix, left)

    # -- tokens --------------------------------------------------------------
    async def create_token(self, token: Token, digest: str) -> None:
        async with self.db.transaction() as tx:
            await tx.run(
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
                await tx.run(
                    "INSERT INTO token_rules (token_id, bucket, prefix, actions) VALUES (?, ?, ?, ?)",
                    (token.id, r.bucket, r.prefix, _store_actions(r.actions)),
                )

    async def _token(self, c: Tx, row: tuple | None) -> Token | None:
        if row is None:
            return None
        scope_rows = None
        if row[8]:
            scope_rows = await c.all(
                "SELECT bucket, prefix, actions FROM token_rules WHERE token_id = ? ORDER BY bucket, prefix", (row[0],)
            )
        return _token(row, scope_rows)

    async def token_login(self, digest: str) -> TokenLogin | None:
        token_rows, user_rows, scope_rows, rule_rows = await self.db.batch(
            [
                (f"SELECT {_TOKEN_COLS} FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?", (digest,)),
                (f"SELECT {_USER_COLS} FROM users WHERE id = (SELECT user_id FROM tokens WHERE token_hash = ?)", (digest,)),
                (
                    "SELECT r.bucket, r.prefix, r.actions FROM token_rules r JOIN tokens t ON t.id = r.token_id "
                    "WHERE t.token_hash = ? ORDER BY r.bucket, r.prefix",
                    (digest,),
                ),
                (
                    "SELECT r.user_id, r.bucket, r.prefix, r.actions FROM rules r JOIN users u ON u.id = r.user_id "
                    "WHERE u.name = ? OR r.user_id = (SELECT user_id FROM tokens WHERE token_hash = ?) "
                    "ORDER BY r.bucket, r.prefix",
                    (ANONYMOUS, digest),
                ),
            ]
        )
        if not token_rows:
            return None
        token = _token(token_rows[0], scope_rows if token_rows[0][8] else None)
        assert token is not None
        rules = tuple(Rule(b, p, _actions(a)) for uid, b, p, a in rule_rows if uid == token.user_id)
        public = tuple(Rule(b, p, _actions(a)) for uid, b, p, a in rule_rows if uid != token.user_id)
        return TokenLogin(token, _user(user_rows[0]) if user_rows else None, rules, public)

    async def _tokens_where(self, where: str, args: tuple) -> list[Token]:
        sql = f"SELECT {_TOKEN_COLS} FROM tokens t JOIN users u ON u.id = t.user_id {where}"
        async with self.db.connection() as c:
            tokens = [await self._token(c, row) for row in await c.all(sql, args)]
        return [t for t in tokens if t is not None]

    async def get_token(self, token_id: str) -> Token | None:
        found = await self._tokens_where("WHERE t.id = ?", (token_id,))
        return found[0] if found else None

    async def list_tokens(self, user_id: int | None = None) -> list[Token]:
        if user_id is None:
            return await self._tokens_where("ORDER BY u.name, t.created_at", ())
        return await self._tokens_where("WHERE t.user_id = ? ORDER BY u.name, t.created_at", (user_id,))

    async def revoke_token(self, token_id: str, now: float) -> bool:
        changed = await self.db.run(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, token_id)
        )
        return changed > 0

    async def touch_token(self, token_id: str, now: float) -> None:
        await self.db.run("UPDATE tokens SET last_used_at = ? WHERE id = ?", (now, token_id))

    # -- sessions ------------------------------------------------------------
    async def create_session(self, digest: str, session: Session) -> None:
        await self.db.run(
            "INSERT INTO sessions (id_hash, user_id, created_at, expires_at, remote) VALUES (?, ?, ?, ?, ?)",
            (digest, session.user_id, session.created_at, session.expires_at, session.remote),
        )

    async def session_by_digest(self, digest: str) -> Session | None:
        row = await self.db.one(
            "SELECT user_id, created_at, expires_at, remote FROM sessions WHERE id_hash = ?", (digest,)
        )
        return Session(*row) if row else None

    async def delete_session(self, digest: str) -> bool:
        return await self.db.run("DELETE FROM sessions WHERE id_hash = ?", (digest,)) > 0

    async def delete_sessions(self, user_id: int) -> int:
        return await self.db.run("DELETE FROM sessions WHERE user_id = ?", (user_id,))

    async def count_sessions(self, user_id: int, now: float) -> int:
        row = await self.db.one("SELECT count(*) FROM sessions WHERE user_id = ? AND expires_at > ?", (user_id, now))
        return int(row[0]) if row else 0

    # -- proven passwords -------------------------------------------------------
    async def find_proof(self, user_id: int, address: str, digest: str, generation: str, now: float) -> ProofLookup:
        rows = await self.db.all(
            "SELECT digest, expires_at FROM password_proofs "
            "WHERE user_id = ? AND address = ? AND generation = ? AND expires_at > ?",
            (user_id, address, generation, now),
        )
        match = next((exp for d, exp in rows if hmac.compare_digest(d, digest)), None)
        return ProofLookup(match, bool(rows))

    async def save_proof(self, user_id: int, address: str, digest: str, generation: str, expires_at: float) -> None:
        await self.db.run(
            "INSERT INTO password_proofs (digest, address, user_id, generation, expires_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (digest, address) DO UPDATE SET user_id = excluded.user_id, "
            "generation = excluded.generation, expires_at = excluded.expires_at",
            (digest, address, user_id, generation, expires_at),
        )

    async def delete_proofs(self, user_id: int) -> int:
        return await self.db.run("DELETE FROM password_proofs WHERE user_id = ?", (user_id,))

    # -- brute-force counters -------------------------------------------------
    async def failures(self, keys: list[str]) -> dict[str, Failures]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = await self.db.all(
            f"SELECT key, failures, last_at, blocked_until FROM login_failures WHERE key IN ({marks})", keys
        )
        return {k: Failures(n, last, until) for k, n, last, until in rows}

    async def record_failure(
        self, key: str, now: float, forget_before: float, wait_for: Callable[[int], float]
    ) -> Failures:
        async with self.db.transaction() as tx:
            row = await tx.one("SELECT failures, last_at, blocked_until FROM login_failures WHERE key = ?", (key,))
            count = 1 if row is None or row[1] < forget_before else row[0] + 1
            until = max(now + wait_for(count), row[2] if row else 0.0)
            await tx.run(
                "INSERT INTO login_failures (key, failures, last_at, blocked_until) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, last_at = excluded.last_at, "
                "blocked_until = excluded.blocked_until",
                (key, count, now, until),
            )
        return Failures(count, now, until)

    async def clear_failures(self, key: str) -> bool:
        return await self.db.run("DELETE FROM login_failures WHERE key = ?", (key,)) > 0

    # -- the shared upload journal ----------------------------------------------
    async def journal_add(self, entry: dict[str, Any]) -> None:
        await self.db.run(
            "INSERT INTO upload_journal (upload_id, bucket, object_key, started_at, pid, owner, journal) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (upload_id) DO NOTHING",
            tuple(entry.get(k) for k in ("upload_id", "bucket", "key", "started", "pid", "owner", "journal")),
        )

    async def journal_remove(self, upload_id: str) -> bool:
        return await self.db.run("DELETE FROM upload_journal WHERE upload_id = ?", (upload_id,)) > 0

    async def journal_entries(self) -> list[dict[str, Any]]:
        rows = await self.db.all(
            "SELECT upload_id, bucket, object_key, started_at, pid, owner, journal FROM upload_journal ORDER BY started_at"
        )
        names = ("upload_id", "bucket", "key", "started", "pid", "owner", "journal")
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def journal_has(self, upload_id: str) -> bool:
        return await self.db.one("SELECT 1 FROM upload_journal WHERE upload_id = ?", (upload_id,)) is not None

    async def worker_alive(self, owner: str, now: float, until: float) -> None:
        await self.db.run(
            "INSERT INTO gateway_workers (owner, seen_at, alive_until) VALUES (?, ?, ?) "
            "ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at, alive_until = excluded.alive_until",
            (owner, now, until),
        )

    async def workers_alive(self, now: float) -> set[str]:
        return {r[0] for r in await self.db.all("SELECT owner FROM gateway_workers WHERE alive_until > ?", (now,))}

    async def take_lease(self, name: str, holder: str, now: float, seconds: float) -> bool:
        # One statement: the row's lock makes two takers at once see each other.
        row = await self.db.one(
            "INSERT INTO leases (name, holder, until_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_at = excluded.until_at "
            "WHERE leases.until_at <= ? OR leases.holder = excluded.holder RETURNING holder",
            (name, holder, now + seconds, now),
        )
        return row is not None and row[0] == holder

    async def release_lease(self, name: str, holder: str) -> None:
        await self.db.run("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    async def purge(self, now: float, forget_before: float) -> None:
        async with self.db.transaction() as tx:
            await tx.run("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            await tx.run("DELETE FROM password_proofs WHERE expires_at <= ?", (now,))
            await tx.run("DELETE FROM login_failures WHERE last_at < ? AND blocked_until <= ?", (forget_before, now))
            await tx.run("DELETE FROM gateway_workers WHERE seen_at < ?", (forget_before - 86400,))

    # -- resumable upload sessions ------------------------------------------------
    async def create_upload_session(self, session: UploadSession) -> None:
        # The dataclass's fields are in _UPLOAD_COLS's order.
        await self.db.run(
            f"INSERT INTO upload_sessions ({_UPLOAD_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", astuple(session)
        )

    async def get_upload_session(self, session_id: str) -> UploadSession | None:
        row = await self.db.one(f"SELECT {_UPLOAD_COLS} FROM upload_sessions WHERE id = ?", (session_id,))
        return _upload_session(row) if row else None

    async def list_upload_sessions(self, user_id: int | None) -> list[UploadSession]:
        if user_id is None:
            rows = await self.db.all(
                f"SELECT {_UPLOAD_COLS} FROM upload_sessions WHERE user_id IS NULL ORDER BY created_at"
            )
        else:
            rows = await self.db.all(
                f"SELECT {_UPLOAD_COLS} FROM upload_sessions WHERE user_id = ? ORDER BY created_at", (user_id,)
            )
        return [_upload_session(r) for r in rows]

    async def delete_upload_session(self, session_id: str) -> bool:
        return await self.db.run("DELETE FROM upload_sessions WHERE id = ?", (session_id,)) > 0

    async def expired_upload_sessions(self, now: float) -> list[UploadSession]:
        rows = await self.db.all(
            f"SELECT {_UPLOAD_COLS} FROM upload_sessions WHERE expires_at <= ? ORDER BY expires_at", (now,)
        )
        return [_upload_session(r) for r in rows]


def _upload_session(row: tuple) -> UploadSession:
    # size is stored as REAL (see migration 4): back to an exact int here.
    sid, user_id, bucket, key, size, part_size, upload_id, name, mtime, created, expires = row
    times = _time(mtime, 0.0), _time(created, 0.0) or 0.0, _time(expires, 0.0) or 0.0
    return UploadSession(sid, user_id, bucket, key, int(size), int(part_size), upload_id, name, *times)


# What moves from SQLite to PostgreSQL, parents first. Left behind: password
# proofs (keyed by the old per-host key: clients simply prove again) and the
# per-host journal, workers and leases.
COPIED_TABLES = ("users", "rules", "tokens", "token_rules", "sessions", "login_failures", "upload_sessions")
_IDENTITY_TABLES = ("users", "rules")  # their ids come along: move the sequences past them


async def copy_store(source: SQLStore, target: SQLStore) -> dict[str, int]:
    """Copy every row worth keeping from an SQLite store into an empty PostgreSQL one, in one transaction."""
    if source.db.dialect != "sqlite" or target.db.dialect != "postgresql":
        raise ValueError("copies go from SQLite to PostgreSQL")
    copied: dict[str, int] = {}
    async with target.db.transaction() as tx:
        row = await tx.one("SELECT count(*) FROM users")
        if row and row[0]:
            raise DuplicateUser(f"the target database already has {row[0]} user(s); give an empty one")
        for table in COPIED_TABLES:
            columns = [r[1] for r in await source.db.all(f"PRAGMA table_info({table})")]
            names = ", ".join(columns)
            rows = await source.db.all(f"SELECT {names} FROM {table}")
            marks = ", ".join("?" * len(columns))
            for values in rows:
                await tx.run(f"INSERT INTO {table} ({names}) VALUES ({marks})", values)
            copied[table] = len(rows)
        for table in _IDENTITY_TABLES:
            await tx.one(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
    return copied


async def open_store(data_dir: str | Path, users_db: str, *, pool_size: int = 8) -> SQLStore:
    """Open (creating and migrating if needed) the store the ``users_db`` setting names."""
    return await SQLStore.open(await open_database(data_dir, users_db, pool_size=pool_size))
