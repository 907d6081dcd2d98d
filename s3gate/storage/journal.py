"""A journal of the multipart uploads this gateway started, and the sweeper that aborts orphans.

One entry per open upload, written when the multipart upload is created and
removed when it completes or is aborted: a small file in DATA_DIR/uploads/
(shared by the workers of one host), or, with a postgresql:// users_db, a row
in that database (shared by every instance). Each entry names its owner: the worker process (pid, plus the
boot id and the process's start time, so a recycled pid is not mistaken for
it) and, inside that worker, the request's task.

An entry is an orphan when no live request owns it: its worker is gone
(kill -9, a crash, power loss) or, in its own worker, the request has ended
without removing it (an abort that failed because S3 was down). Orphans are
aborted by every worker at start-up and every ORPHAN_SWEEP_SECONDS after, one
worker at a time (an flock on the directory, or a lease row in the database). This is safe by default: the
journal lists only s3gate's own uploads, and a live request's upload is never
touched. With ``abort_stale_uploads_hours`` set, entries older than that are
aborted too, owner or not. Uploads s3gate did not start are never touched.

A worker of another host cannot be looked up: in the database each worker
says it is alive at every round, and one silent for OWNER_SILENCE_ROUNDS
rounds is gone. Several gateway machines must not share one data directory;
they share the database instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from .s3 import Storage

log = logging.getLogger("s3gate.storage")

# How often each worker looks for orphaned uploads (and, if set, stale ones).
ORPHAN_SWEEP_SECONDS = 600.0
# With a shared database: rounds without a word from a worker of another host before its uploads are orphans.
OWNER_SILENCE_ROUNDS = 3


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> str | None:
    """A name for the running process ``pid`` that a later process with the same pid won't share.

    None when no such process runs. On Linux: boot id, pid and start time
    (/proc/PID/stat, field 22); elsewhere only the pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # Linux, and no such process
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return str(pid)
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    if fields[0] == "Z":  # a zombie: dead, not yet reaped
        return None
    return f"{_boot_id()}/{pid}/{fields[19]}"


class JournalEntries(Protocol):
    """Where the journal's entries live and how sweepers take turns."""

    shared: bool  # True: entries of other hosts' workers too (a database several instances use)

    async def add(self, entry: dict[str, Any]) -> None: ...
    async def remove(self, upload_id: str) -> None: ...
    async def all(self) -> list[dict[str, Any]]: ...
    async def has(self, upload_id: str) -> bool: ...
    async def claim(self, entry: dict[str, Any]) -> bool:
        """Take ``entry`` for aborting; False: it ended, or another sweeper took it."""
    async def unclaim(self, entry: dict[str, Any]) -> None:
        """Give back an entry whose abort failed (the next round tries again)."""
    def turn(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """True while this sweeper has the turn; False: another one is sweeping."""

    async def alive(self, owner: str) -> None:
        """Say that ``owner`` (a worker) is alive (shared entries only)."""

    async def owners_alive(self) -> set[str]: ...


class FileEntries:
    """One small file per entry in DATA_DIR/uploads; turns by an flock on the folder."""

    shared = False

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, upload_id: str) -> Path:
        return self.directory / (hashlib.sha256(upload_id.encode()).hexdigest()[:32] + ".json")

    def write(self, entry: dict[str, Any]) -> None:
        path = self._path(entry["upload_id"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, path)

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for path in self.directory.glob("*.json"):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    async def add(self, entry: dict[str, Any]) -> None:
        await asyncio.to_thread(self.write, entry)

    async def remove(self, upload_id: str) -> None:
        await asyncio.to_thread(self._path(upload_id).unlink, True)

    async def all(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.entries)

    async def has(self, upload_id: str) -> bool:
        return await asyncio.to_thread(self._path(upload_id).exists)

    async def claim(self, entry: dict[str, Any]) -> bool:
        return await self.has(entry["upload_id"])  # one sweeper at a time holds the flock

    async def unclaim(self, entry: dict[str, Any]) -> None:
        pass  # nothing was taken away

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        fd = await asyncio.to_thread(os.open, self.directory, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never waits
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    async def alive(self, owner: str) -> None:
        pass

    async def owners_alive(self) -> set[str]:
        return set()


class DatabaseEntries:
    """Entries in the shared users database (PostgreSQL), for several gateway instances.

    A worker on another host cannot be looked up in /proc: each worker says it
    is alive at every sweep round, and an owner silent for OWNER_SILENCE_ROUNDS
    rounds counts as gone. Sweepers take turns through a lease row, so two
    instances never abort the same upload.
    """

    shared = True

    def __init__(self, db: Any, every: float):
        self.db = db  # an s3gate.auth SQLStore: journal_* methods
        self.every = every
        self.holder = secrets.token_hex(8)

    async def add(self, entry: dict[str, Any]) -> None:
        await self.db.journal_add(entry)

    async def remove(self, upload_id: str) -> None:
        await self.db.journal_remove(upload_id)

    async def all(self) -> list[dict[str, Any]]:
        return await self.db.journal_entries()

    async def has(self, upload_id: str) -> bool:
        return await self.db.journal_has(upload_id)

    async def claim(self, entry: dict[str, Any]) -> bool:
        # Whoever deletes the row aborts the upload: exactly once, even if a slow
        # round outlived its lease and another sweeper started meanwhile.
        return await self.db.journal_remove(entry["upload_id"])

    async def unclaim(self, entry: dict[str, Any]) -> None:
        await self.db.journal_add(entry)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        # A lease, not a lock held on a connection: a sweeper that dies mid-round
        # hands over when the lease runs out.
        mine = await self.db.take_lease("upload-sweeper", self.holder, time.time(), self.every)
        try:
            yield mine
        finally:
            if mine:
                await self.db.release_lease("upload-sweeper", self.holder)

    async def alive(self, owner: str) -> None:
        now = time.time()
        # Each worker promises its next word within its own rounds: instances with
        # other sweep intervals then never misjudge each other.
        await self.db.worker_alive(owner, now, now + OWNER_SILENCE_ROUNDS * self.every)

    async def owners_alive(self) -> set[str]:
        return await self.db.workers_alive(time.time())


class UploadJournal:
    def __init__(self, where: Path | JournalEntries):
        self.store: JournalEntries = FileEntries(where) if isinstance(where, (str, Path)) else where
        self.owner = process_identity(os.getpid())
        # This journal among others in the same process (tests run several apps).
        self.instance = secrets.token_hex(8)
        # upload id -> the task of the request that owns it, in this journal.
        self._live: dict[str, asyncio.Task[Any] | None] = {}

    async def started(self, bucket: str, key: str, upload_id: str) -> None:
        self._live[upload_id] = asyncio.current_task()
        entry = {
            "bucket": bucket,
            "key": key,
            "upload_id": upload_id,
            "started": time.time(),
            "pid": os.getpid(),
            "owner": self.owner,
            "journal": self.instance,
        }
        await self.store.add(entry)

    async def ended(self, upload_id: str) -> None:
        await self.store.remove(upload_id)
        self._live.pop(upload_id, None)

    async def entries(self) -> list[dict[str, Any]]:
        return await self.store.all()

    async def heartbeat(self) -> None:
        if self.owner is not None:
            await self.store.alive(self.owner)

    async def owned(self, entry: dict[str, Any], alive: set[str] | None = None) -> bool:
        """Whether a live request owns this entry's upload."""
        if entry.get("journal") == self.instance:
            task = self._live.get(entry["upload_id"])
            return task is not None and not task.done()
        pid, owner = entry.get("pid"), entry.get("owner")
        if not isinstance(pid, int) or owner is None:
            return False  # written before owners were recorded: no one can claim it
        if self.store.shared and not _same_boot(owner, self.owner):
            return owner in (alive or set())  # another host: only its word that it is alive
        return await asyncio.to_thread(process_identity, pid) == owner  # reads /proc: off the loop

    async def sweep_orphans(self, storage: Storage) -> int:
        """Abort the uploads no live request owns. Returns how many."""
        alive = await self.store.owners_alive() if self.store.shared else None

        async def orphaned(entry: dict[str, Any]) -> bool:
            return not await self.owned(entry, alive)

        return await self._sweep(storage, orphaned, "orphaned")

    async def sweep(self, storage: Storage, older_than: float, now: float | None = None) -> int:
        """Abort journal entries older than ``older_than`` seconds, owned or not. Returns how many."""
        cutoff = (now or time.time()) - older_than

        async def stale(entry: dict[str, Any]) -> bool:
            return entry["started"] <= cutoff

        return await self._sweep(storage, stale, "stale")

    async def _sweep(self, storage: Storage, doomed, why: str) -> int:
        async with self.store.turn() as mine:
            if not mine:
                return 0  # another worker (or instance) is sweeping
            aborted = 0
            for entry in await self.store.all():
                if not await doomed(entry) or not await self.store.claim(entry):
                    continue  # kept, or ended (or taken) since it was read
                try:
                    await storage.abort_multipart(entry["bucket"], entry["key"], entry["upload_id"])
                except Exception as exc:
                    log.warning("%s upload %s/%s: abort failed: %s", why, entry["bucket"], entry["key"], exc)
                    await self.store.unclaim(entry)
                    continue
                await self.ended(entry["upload_id"])
                aborted += 1
                log.info("aborted %s multipart upload of %s/%s", why, entry["bucket"], entry["key"])
            return aborted


def _same_boot(owner: str, mine: str | None) -> bool:
    """Whether ``owner`` is a process of this machine since its last boot (the boot id leads it)."""
    return mine is not None and owner.split("/", 1)[0] == mine.split("/", 1)[0] and "/" in owner


async def sweep_forever(
    journal: UploadJournal,
    storage: Storage,
    hours: float = 0.0,
    every: float = ORPHAN_SWEEP_SECONDS,
    also: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """From start-up on: orphans every ``every`` seconds; with ``hours`` > 0, stale uploads too;
    then ``also`` (expired resumable upload sessions, which the journal does not hold)."""
    while True:
        try:
            await journal.heartbeat()
            await journal.sweep_orphans(storage)
            if hours > 0:
                await journal.sweep(storage, hours * 3600)
        except Exception as exc:  # never let the sweeper die
            log.warning("upload sweep failed: %s", exc)
        if also is not None:
            try:
                await also()
            except Exception as exc:
                log.warning("upload session sweep failed: %s", exc)
        await asyncio.sleep(every)
