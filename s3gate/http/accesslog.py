"""Access log lines without query strings: signed links carry credentials there."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .. import keys


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        rid = request.get(keys.REQUEST_ID, "-") if isinstance(request, web.Request) else "-"
        self.logger.info(
            '%s "%s %s" %s %s %.3fs rid=%s',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
            rid,
        )
