"""The HTTP server under the app: aiohttp's, minus its habit of repeating bad requests.

When a request cannot be parsed (a bare LF line ending, a bad header token,
an over-long line), aiohttp logs the raw bytes with a traceback and echoes
them in the 400 body. Those bytes hold the client's ``Authorization`` header,
its ``s3g_`` token and its session cookie. Here the log line names only the
kind of error and the client's address, and the body is a fixed sentence.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .accesslog import escape

log = logging.getLogger("s3gate.http")

_PHRASES = {
    400: "bad request: malformed HTTP",
    413: "request line or header too large",
    431: "request header too large",
}


class _QuietRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # Never pass the parser's message or exc_info on: both quote the raw request.
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            log.error("error handling request from %s: %s (%d)", escape(request.remote), kind, status)
        else:
            log.info("refused a malformed request from %s: %s (%d)", escape(request.remote), kind, status)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send the error")
        text = _PHRASES.get(status, "internal error" if status >= 500 else "bad request")
        resp = web.Response(status=status, text=text + "\n", content_type="text/plain")
        resp.force_close()
        return resp


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections use the quiet request handler."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds its Server inside Application; the subclass adds no
        # state, only the handler factory (tests/http/test_server.py guards it).
        server.__class__ = _QuietServer
        return server
