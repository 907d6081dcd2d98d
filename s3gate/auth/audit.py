"""The audit log: one JSON object per line on the ``s3gate.audit`` logger.

Who did what, to which bucket/key, from where, with which request id, and
how it ended. Only the fields named in ``FIELDS`` are written, and none of
them can hold a secret: passwords, tokens and cookie values are never passed
here (tokens appear by their public id, sessions not at all).

The destination is the ``audit_log`` setting: a file (default
``<data_dir>/audit.log``, created mode 0600, appended to by every worker) or
``-`` for the main log on standard error. File writes happen on a listener
thread, never on the event loop.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import queue
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


class AuditSink:
    """Owns the audit handler for one app's lifetime (started and stopped in cleanup_ctx)."""

    def __init__(self, destination: str, data_dir: str):
        self.destination = destination
        self.data_dir = data_dir
        self._listener: logging.handlers.QueueListener | None = None
        self._handler: logging.Handler | None = None
        self._saved: tuple[int, bool] | None = None

    @property
    def path(self) -> Path | None:
        if self.destination in ("", "-"):
            return None
        p = Path(self.destination)
        return p if p.is_absolute() else Path(self.data_dir) / p

    def start(self) -> None:
        self._saved = (log.level, log.propagate)
        log.setLevel(logging.INFO)
        path = self.path
        if path is None:
            return  # propagate to the main log (standard error)
        ensure_private_file(path)
        target = logging.handlers.WatchedFileHandler(path, encoding="utf-8")  # follows logrotate's moves
        target.setFormatter(logging.Formatter("%(message)s"))
        q: queue.SimpleQueue = queue.SimpleQueue()
        self._handler = logging.handlers.QueueHandler(q)
        self._listener = logging.handlers.QueueListener(q, target)
        self._listener.start()
        log.addHandler(self._handler)
        log.propagate = False

    def stop(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler = None
        if self._listener is not None:
            self._listener.stop()
            for h in self._listener.handlers:
                h.close()
            self._listener = None
        if self._saved is not None:
            log.setLevel(self._saved[0])
            log.propagate = self._saved[1]
            self._saved = None
