"""log_format = "json": one JSON object per log line, for a log pipeline.

Every line has ``time`` (UTC, ISO 8601), ``level`` and ``logger``. A record
that carries structured fields (the access log passes them as
``extra={"json_fields": {...}}``) is those fields; any other record adds its
``message`` (and ``exception``, a traceback, when there is one). json.dumps
does all escaping; ``ensure_ascii`` keeps every line plain ASCII, so no
character a client sent (a line or paragraph separator, a lone surrogate)
can split a line or fail to encode.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

FIELDS_ATTR = "json_fields"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, FIELDS_ATTR, None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """logging.Formatter(TEXT_FORMAT), with the date part of ``asctime`` made once a second.

    Every request writes an access line; strftime for each was a visible share
    of a small request's CPU. The text is exactly the standard formatter's.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second: int | None = None
        self._date = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._date = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return self.default_msec_format % (self._date, record.msecs)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for the ``log_format`` setting."""
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure(level: str, log_format: str) -> None:
    """The root logger on standard error, in the chosen format (once per process, as basicConfig)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])
