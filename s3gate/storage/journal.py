"""A journal of the multipart uploads this gateway started, and the sweeper that aborts orphans.

One small file per open upload in DATA_DIR/uploads/ (shared by all workers),
written when the multipart upload is created and removed when it completes
or is aborted. Each entry names its owner: the worker process (pid, plus the
boot id and the process's start time, so a recycled pid is not mistaken for
it) and, inside that worker, the request's task.

An entry is an orphan when no live request owns it: its worker is gone
(kill -9, a crash, power loss) or, in its own worker, the request has ended
without removing it (an abort that failed because S3 was down). Orphans are
aborted by every worker at start-up and every ORPHAN_SWEEP_SECONDS after, one
worker at a time (an flock on the directory). This is safe by default: the
journal lists only s3gate's own uploads, and a live request's upload is never
touched. With ``abort_stale_uploads_hours`` set, entries older than that are
aborted too, owner or not. Uploads s3gate did not start are never touched.

Owners are processes of this machine: several gateway machines must not
share one data directory.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .s3 import Storage

log = logging.getLogger("s3gate.storage")

# How often each worker looks for orphaned uploads (and, if set, stale ones).
ORPHAN_SWEEP_SECONDS = 600.0


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


class UploadJournal:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.owner = process_identity(os.getpid())
        # This journal among others in the same process (tests run several apps).
        self.instance = secrets.token_hex(8)
        # upload id -> the task of the request that owns it, in this journal.
        self._live: dict[str, asyncio.Task[Any] | None] = {}

    def _path(self, upload_id: str) -> Path:
        return self.directory / (hashlib.sha256(upload_id.encode()).hexdigest()[:32] + ".json")

    def _write(self, entry: dict[str, Any]) -> None:
        path = self._path(entry["upload_id"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, path)

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
        await asyncio.to_thread(self._write, entry)

    async def ended(self, upload_id: str) -> None:
        await asyncio.to_thread(self._path(upload_id).unlink, True)
        self._live.pop(upload_id, None)

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for path in self.directory.glob("*.json"):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    async def owned(self, entry: dict[str, Any]) -> bool:
        """Whether a live request owns this entry's upload."""
        if entry.get("journal") == self.instance:
            task = self._live.get(entry["upload_id"])
            return task is not None and not task.done()
        pid, owner = entry.get("pid"), entry.get("owner")
        if not isinstance(pid, int) or owner is None:
            return False  # written before owners were recorded: no one can claim it
        return await asyncio.to_thread(process_identity, pid) == owner  # reads /proc: off the loop

    async def sweep_orphans(self, storage: Storage) -> int:
        """Abort the uploads no live request owns. Returns how many."""

        async def orphaned(entry: dict[str, Any]) -> bool:
            return not await self.owned(entry)

        return await self._sweep(storage, orphaned, "orphaned")

    async def sweep(self, storage: Storage, older_than: float, now: float | None = None) -> int:
        """Abort journal entries older than ``older_than`` seconds, owned or not. Returns how many."""
        cutoff = (now or time.time()) - older_than

        async def stale(entry: dict[str, Any]) -> bool:
            return entry["started"] <= cutoff

        return await self._sweep(storage, stale, "stale")

    async def _sweep(self, storage: Storage, doomed, why: str) -> int:
        with self._lock() as mine:
            if not mine:
                return 0  # another worker is sweeping
            entries = await asyncio.to_thread(self.entries)
            aborted = 0
            for entry in entries:
                if not await doomed(entry) or not await asyncio.to_thread(self._path(entry["upload_id"]).exists):
                    continue  # kept, or ended since it was read
                try:
                    await storage.abort_multipart(entry["bucket"], entry["key"], entry["upload_id"])
                except Exception as exc:
                    log.warning("%s upload %s/%s: abort failed: %s", why, entry["bucket"], entry["key"], exc)
                    continue
                await self.ended(entry["upload_id"])
                aborted += 1
                log.info("aborted %s multipart upload of %s/%s", why, entry["bucket"], entry["key"])
            return aborted

    @contextlib.contextmanager
    def _lock(self):
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)


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
