"""The two databases the users store runs on, behind one small async interface.

``SQLStore`` (``sql.py``) writes every query once, with ``?`` placeholders
and SQL both engines accept; a ``Database`` runs them:

- ``SQLiteDatabase``: one connection owned by one thread (never the event
  loop), guarded by an asyncio lock so a transaction's statements never
  interleave with another coroutine's. WAL mode lets the workers and the CLI
  share the file; ``BEGIN IMMEDIATE`` serialises writers.
- ``PostgresDatabase``: psycopg 3 with a ``psycopg_pool`` connection pool,
  fully async. Each read-modify-write transaction first takes one
  transaction-scoped advisory lock, so it is serialised across every worker
  of every instance exactly as ``BEGIN IMMEDIATE`` serialises it on SQLite:
  the store's logic is written once and holds on both.

``open_database(data_dir, users_db)`` picks one from the setting: a
``postgresql://`` (or ``postgres://``) URL, else an SQLite file path.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg_pool

from ..errors import ConfigError
from ..private import ensure_private_file
from ..settings import redact_url

T = TypeVar("T")
Row = tuple[Any, ...]

# pg_advisory_xact_lock key for the store's writing transactions (any constant; "s3gt").
_WRITE_LOCK = 0x73336774
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_server_url(users_db: str) -> bool:
    return users_db.startswith(POSTGRES_SCHEMES)


def database_path(data_dir: str | Path, users_db: str) -> Path:
    """The SQLite file the ``users_db`` setting names (a relative path is inside data_dir)."""
    if "://" in users_db:
        scheme = users_db.split("://", 1)[0]
        raise ConfigError(f"users_db: {scheme}:// is not a database s3gate knows; give postgresql://… or a file path")
    path = Path(users_db)
    return path if path.is_absolute() else Path(data_dir) / path


class Tx(abc.ABC):
    """Statements on one connection (inside a transaction, or autocommit)."""

    @abc.abstractmethod
    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    @abc.abstractmethod
    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Execute; return the number of rows changed."""

    async def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        rows = await self.all(sql, args)
        return rows[0] if rows else None

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """The rows of each statement, in order (SQLite: in one trip to its thread)."""
        return [await self.all(sql, args) for sql, args in statements]


class Database(abc.ABC):
    dialect: str
    integrity_error: type[Exception]

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A writing transaction, serialised against every other one (on every worker and instance)."""

    @abc.abstractmethod
    def connection(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        """A connection in autocommit mode: each statement is its own transaction."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def version(self, tx: Tx) -> int:
        """The schema version (0 for an empty database)."""

    @abc.abstractmethod
    async def set_version(self, tx: Tx, version: int) -> None: ...

    def ddl(self, statement: str) -> str:
        """A schema statement, written for SQLite, in this database's words."""
        return statement

    # One statement, autocommit.
    async def one(self, sql: str, args: Sequence[Any] = ()) -> Row | None:
        async with self.connection() as c:
            return await c.one(sql, args)

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        async with self.connection() as c:
            return await c.all(sql, args)

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        async with self.connection() as c:
            return await c.run(sql, args)

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """Several reads on one connection, each its own statement (what every request's login needs)."""
        async with self.connection() as c:
            return await c.batch(statements)


# -- SQLite -------------------------------------------------------------------------------
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
            time.sleep(0.05)  # the database's own thread, never the event loop


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode with the pragmas every opener uses."""
    ensure_private_file(path)  # the -wal and -shm files inherit this mode
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        _use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


class _SQLiteTx(Tx):
    def __init__(self, db: SQLiteDatabase):
        self._db = db

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        # fetchall: a RETURNING statement only completes (and commits) once its rows are read.
        return await self._db._call(lambda: self._db.conn.execute(sql, tuple(args)).fetchall())

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        return await self._db._call(lambda: self._db.conn.execute(sql, tuple(args)).rowcount)

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        # One hop to the database's thread instead of one per statement: a hop (executor,
        # wake-up of the loop) costs more than an indexed lookup.
        conn = self._db.conn
        return await self._db._call(lambda: [conn.execute(sql, tuple(args)).fetchall() for sql, args in statements])


class SQLiteDatabase(Database):
    dialect = "sqlite"
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: Path):
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3gate-users-db")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SQLiteDatabase:
        db = cls(path)
        try:
            db._conn = await db._call(sqlite_connect, path)
        except BaseException:
            db._executor.shutdown(wait=False)
            raise
        return db

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("users store is closed")
        return self._conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Tx]:
        async with self._lock:
            yield _SQLiteTx(self)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._lock:
            await self._call(self.conn.execute, "BEGIN IMMEDIATE")
            try:
                yield _SQLiteTx(self)
            except BaseException:
                # Queued behind any statement still running on the one thread.
                await self._call(self.conn.execute, "ROLLBACK")
                raise
            await self._call(self.conn.execute, "COMMIT")

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)
        self._executor.shutdown(wait=False)

    async def version(self, tx: Tx) -> int:
        row = await tx.one("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def set_version(self, tx: Tx, version: int) -> None:
        await tx.run(f"PRAGMA user_version = {int(version)}")


# -- PostgreSQL ---------------------------------------------------------------------------
_PLACEHOLDERS: dict[str, str] = {}


def _pg_sql(sql: str) -> str:
    """``?`` placeholders become psycopg's ``%s`` (the store's SQL holds no other ``?`` or ``%``)."""
    out = _PLACEHOLDERS.get(sql)
    if out is None:
        if "%" in sql:
            raise ValueError("store SQL must not contain '%'")
        out = _PLACEHOLDERS[sql] = sql.replace("?", "%s")
    return out


class _PgTx(Tx):
    def __init__(self, conn: Any):
        self._conn = conn

    async def all(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        cur = await self._conn.execute(_pg_sql(sql), tuple(args))
        return await cur.fetchall() if cur.description else []

    async def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = await self._conn.execute(_pg_sql(sql), tuple(args))
        return cur.rowcount


class PostgresDatabase(Database):
    dialect = "postgresql"
    integrity_error = psycopg.IntegrityError

    def __init__(self, url: str, pool: psycopg_pool.AsyncConnectionPool):
        self.url = url
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, max_size: int = 8, wait: float = 10.0) -> PostgresDatabase:
        pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": True, "application_name": "s3gate"},
            # No check before each checkout (it costs a round trip per query): after a
            # database restart a request may fail once on a dead connection, which the
            # pool then drops and replaces.
            name="s3gate-users",
        )
        try:
            await pool.open(wait=True, timeout=wait)
        except psycopg_pool.PoolTimeout:
            reason = await _why_not(url)
            await pool.close()
            raise ConfigError(f"users_db: cannot connect to {redact_url(url)}: {reason}") from None
        return cls(url, pool)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Tx]:
        async with self._pool.connection() as conn:
            yield _PgTx(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            yield _PgTx(conn)

    async def close(self) -> None:
        await self._pool.close()

    async def version(self, tx: Tx) -> int:
        await tx.run("CREATE TABLE IF NOT EXISTS s3gate_schema (version INTEGER NOT NULL)")
        row = await tx.one("SELECT max(version) FROM s3gate_schema")
        return int(row[0]) if row and row[0] is not None else 0

    async def set_version(self, tx: Tx, version: int) -> None:
        await tx.run("CREATE TABLE IF NOT EXISTS s3gate_schema (version INTEGER NOT NULL)")
        await tx.run("DELETE FROM s3gate_schema")
        await tx.run("INSERT INTO s3gate_schema (version) VALUES (?)", (int(version),))

    def ddl(self, statement: str) -> str:
        statement = statement.replace("INTEGER PRIMARY KEY", "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        return re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement)  # PostgreSQL's REAL is 4 bytes: not a time


async def _why_not(url: str) -> str:
    """One connection attempt's error, without the password (the pool only says it timed out)."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=5)
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return redact_url(text)
    await conn.close()
    return "timed out"


async def open_database(data_dir: str | Path, users_db: str, *, pool_size: int = 8) -> Database:
    """``pool_size``: PostgreSQL connections at most (each worker of each instance has its own pool)."""
    if is_server_url(users_db):
        return await PostgresDatabase.open(users_db, max_size=pool_size)
    return await SQLiteDatabase.open(database_path(data_dir, users_db))
