"""Access log lines: no query strings (signed links carry credentials there), no forged lines.

Every field a client can influence (the decoded path, the method, the
address behind a proxy) is escaped: control characters, backslashes, quotes
and anything non-printable become ``\\xNN`` / ``\\uNNNN``, so ``%0a`` in a URL
can never start a second line and a reader can always tell where a field ends.
"""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .. import keys
from . import forwarded

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\\u2028\u2029]')


def _escape_char(match: re.Match[str]) -> str:
    c = match.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def escape(value: object) -> str:
    """One log field, safe to print on one line."""
    return _UNSAFE.sub(_escape_char, str(value))


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if isinstance(request, web.Request) and keys.REQUEST_ID in request:
            rid, remote = request[keys.REQUEST_ID], forwarded.client_address(request)
        else:  # a request the parser refused never reached the app: no proxy to ask
            rid, remote = "-", request.remote
        self.logger.info(
            '%s "%s %s" %s %s %.3fs rid=%s',
            escape(remote),
            escape(request.method),
            escape(request.path),
            response.status,
            response.body_length,
            time,
            escape(rid),
        )
