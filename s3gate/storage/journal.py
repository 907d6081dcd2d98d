"""A journal of the multipart uploads this gateway started, and the stale-upload sweeper.

One small file per open upload in DATA_DIR/uploads/ (shared by all workers),
written when the multipart upload is created and removed when it completes
or is aborted. What is left there belongs to a worker that died hard (kill -9,
power loss). With ``abort_stale_uploads_hours`` set, one worker at a time
(an flock on the directory) aborts journal entries older than that. Uploads
that s3gate did not start are never in the journal, so never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .s3 import Storage

log = logging.getLogger("s3gate.storage")


class UploadJournal:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, upload_id: str) -> Path:
        return self.directory / (hashlib.sha256(upload_id.encode()).hexdigest()[:32] + ".json")

    def _write(self, bucket: str, key: str, upload_id: str, started: float) -> None:
        tmp = self._path(upload_id).with_suffix(".tmp")
        tmp.write_text(json.dumps({"bucket": bucket, "key": key, "upload_id": upload_id, "started": started}))
        os.replace(tmp, self._path(upload_id))

    async def started(self, bucket: str, key: str, upload_id: str) -> None:
        await asyncio.to_thread(self._write, bucket, key, upload_id, time.time())

    async def ended(self, upload_id: str) -> None:
        await asyncio.to_thread(self._path(upload_id).unlink, True)

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for path in self.directory.glob("*.json"):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    async def sweep(self, storage: Storage, older_than: float, now: float | None = None) -> int:
        """Abort journal entries older than ``older_than`` seconds. Returns how many."""
        cutoff = (now or time.time()) - older_than
        with self._lock() as mine:
            if not mine:
                return 0  # another worker is sweeping
            entries = await asyncio.to_thread(self.entries)
            aborted = 0
            for entry in entries:
                if entry["started"] > cutoff:
                    continue
                try:
                    await storage.abort_multipart(entry["bucket"], entry["key"], entry["upload_id"])
                except Exception as exc:
                    log.warning("stale upload %s/%s: abort failed: %s", entry["bucket"], entry["key"], exc)
                    continue
                await self.ended(entry["upload_id"])
                aborted += 1
                log.info("aborted stale multipart upload of %s/%s", entry["bucket"], entry["key"])
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


async def sweep_forever(journal: UploadJournal, storage: Storage, hours: float, every: float = 3600.0) -> None:
    while True:
        try:
            await journal.sweep(storage, hours * 3600)
        except Exception as exc:  # never let the sweeper die
            log.warning("stale-upload sweep failed: %s", exc)
        await asyncio.sleep(every)
