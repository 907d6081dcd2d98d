"""Access log lines: no query strings (signed links carry credentials there), no forged lines.

Every field a client can influence (the decoded path, the method, the
address behind a proxy) is escaped: control characters, backslashes, quotes
and anything non-printable become ``\\xNN`` / ``\\uNNNN``, so ``%0a`` in a URL
can never start a second line and a reader can always tell where a field ends.

Each line also carries its fields unescaped as ``json_fields``: with
``log_format = "json"`` (s3gate.logformat) they are the line, and json.dumps
does the escaping. Neither form holds a header value, a query string or a
credential.
"""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .. import keys
from ..logformat import FIELDS_ATTR
from . import forwarded

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\\u2028\u2029]')


def _escape_char(match: re.Match[str]) -> str:
    c = match.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def escape(value: object) -> str:
    """One log field, safe to print on one line."""
    return _UNSAFE.sub(_escape_char, str(value))


UNMATCHED = "unmatched"  # the route of a request no route took (router 404/405, parser errors)


def route_label(request: web.BaseRequest) -> str:
    """The route template that matched ("/files/{bucket}/{path}"), never the path a client sent.

    The route of the access log's JSON lines and the label of every HTTP metric.
    """
    try:
        resource = request.match_info.route.resource  # type: ignore[attr-defined]
    except (AttributeError, AssertionError):  # refused by the parser, before any routing
        return UNMATCHED
    return resource.canonical if resource is not None else UNMATCHED


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        user = None
        if isinstance(request, web.Request) and keys.REQUEST_ID in request:
            rid, remote = request[keys.REQUEST_ID], forwarded.client_address(request)
            who = request.get(keys.PRINCIPAL)
            user = getattr(who, "name", None)
        else:  # a request the parser refused never reached the app: no proxy to ask
            rid, remote = "-", request.remote
        fields = {
            "request_id": rid,
            "client": remote,
            "method": request.method,
            "route": route_label(request),
            "path": request.path,  # decoded, without the query string
            "status": response.status,
            "bytes_in": getattr(request.content, "total_bytes", 0),
            "bytes_out": response.body_length,
            "duration": round(time, 6),
            "user": user,
        }
        self.logger.info(
            '%s "%s %s" %s %s %.3fs rid=%s',
            escape(remote),
            escape(request.method),
            escape(request.path),
            response.status,
            response.body_length,
            time,
            escape(rid),
            extra={FIELDS_ATTR: fields},
        )
