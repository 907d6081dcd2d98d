"""The audit log: one JSON object per line on the ``s3gate.audit`` logger.

Who did what, to which bucket/key, from where, with which request id, and
how it ended. Only the fields named in ``FIELDS`` are written, and none of
them can hold a secret: passwords, tokens and cookie values are never passed
here (tokens appear by their public id, sessions not at all).

The destination is the ``audit_log`` setting: a file (default
``<data_dir>/audit.log``, created mode 0600, appended to by every worker) or
``-`` for the main log on standard error. File writes happen on a writer
thread, never on the event loop, a batch of lines per write when busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..private import ensure_private_file

log = logging.getLogger("s3gate.audit")

FIELDS = (
    "user",  # who: a user name, or null for anonymous / unknown names
    "via",  # password | token | session | link | anonymous | cli
    "token",  # public token id (never the token)
    "action",  # read | list | write | delete (for access events)
    "bucket",
    "key",
    "target",  # admin events: the user or token acted upon
    "detail",  # admin events: rule, scope, expiry...
    "remote",  # client address
    "request_id",
    "outcome",  # ok | denied | failed | locked | error
    "status",  # HTTP status sent
    "reason",
)


def record(event: str, **fields: Any) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    entry: dict[str, Any] = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "event": event}
    for name in FIELDS:
        value = fields.get(name)
        if value is not None and value != "":
            entry[name] = value if isinstance(value, (int, float, bool)) else str(value)[:1024]
    unknown = set(fields) - set(FIELDS)
    if unknown:  # a programming error; drop the values rather than risk logging a secret
        entry["dropped_fields"] = sorted(unknown)
    log.info(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))


class _Enqueue(logging.Handler):
    """On the event loop: hand the line (the record's message, already JSON) to the writer thread."""

    def __init__(self, lines: queue.SimpleQueue):
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.put(record.getMessage())
        except Exception:
            self.handleError(record)


class _AuditFile:
    """The writer thread: appends queued lines to the file, many per write() when busy.

    Like logging's WatchedFileHandler it follows logrotate's moves (a new
    file, created private, when the path no longer names the open one), but
    it looks at the path and flushes once per batch instead of once per line:
    under load one system call carries every line that queued meanwhile.
    """

    MAX_BATCH = 1000

    def __init__(self, path: Path, lines: queue.SimpleQueue):
        self.path, self.lines = path, lines
        self._file = self._open()
        self.thread = threading.Thread(target=self._run, name="s3gate-audit", daemon=True)

    def _open(self):
        ensure_private_file(self.path)
        # Unbuffered O_APPEND: each batch is one write() of whole lines, so the batches of
        # several workers appending to one file never split each other's lines.
        return open(self.path, "ab", buffering=0)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]

    def _reopen_if_moved(self) -> None:
        if not self._file.closed:  # closed: an earlier reopen failed; try again now
            try:
                if os.path.samestat(os.stat(self.path), os.fstat(self._file.fileno())):
                    return
            except FileNotFoundError:
                pass
            self._file.close()
        self._file = self._open()

    def _run(self) -> None:
        done = False
        while not done:
            batch: list[str] = []
            line = self.lines.get()  # wait for one, then take whatever queued meanwhile
            while True:
                if line is _STOP:
                    done = True
                    break
                batch.append(line)
                if len(batch) == self.MAX_BATCH:
                    break
                try:
                    line = self.lines.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._reopen_if_moved()
                    self._write(("\n".join(batch) + "\n").encode("utf-8", "backslashreplace"))
                except Exception as exc:  # a full disk must not end the thread or the gateway; say so once a batch
                    logging.getLogger("s3gate").error("audit log %s: %s (%d lines lost)", self.path, exc, len(batch))
        self._file.close()


_STOP = object()  # queued last by AuditSink.stop: the writer writes what came before, then ends


def to_main_log(destination: str) -> bool:
    """Whether an ``audit_log`` value means the main log on standard error (``-``), not a file."""
    return destination in ("", "-")


@contextlib.asynccontextmanager
async def running(destination: str, data_dir: str) -> AsyncIterator[None]:
    """Audit lines recorded inside go to ``destination``: a file, or ``-`` for the main log."""
    sink = AuditSink(destination, data_dir)
    await asyncio.to_thread(sink.start)
    try:
        yield
    finally:
        await asyncio.to_thread(sink.stop)


class AuditSink:
    """Owns the audit handler while it runs (started and stopped by ``running()``)."""

    def __init__(self, destination: str, data_dir: str):
        self.destination = destination
        self.data_dir = data_dir
        self._writer: _AuditFile | None = None
        self._handler: logging.Handler | None = None
        self._saved: tuple[int, bool] | None = None

    @property
    def path(self) -> Path | None:
        if to_main_log(self.destination):
            return None
        p = Path(self.destination)
        return p if p.is_absolute() else Path(self.data_dir) / p

    def start(self) -> None:
        self._saved = (log.level, log.propagate)
        log.setLevel(logging.INFO)
        path = self.path
        if path is None:
            return  # propagate to the main log (standard error)
        lines: queue.SimpleQueue = queue.SimpleQueue()
        self._writer = _AuditFile(path, lines)
        self._writer.thread.start()
        self._handler = _Enqueue(lines)
        log.addHandler(self._handler)
        log.propagate = False

    def stop(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler = None
        if self._writer is not None:
            self._writer.lines.put(_STOP)
            self._writer.thread.join()
            self._writer = None
        if self._saved is not None:
            log.setLevel(self._saved[0])
            log.propagate = self._saved[1]
            self._saved = None
