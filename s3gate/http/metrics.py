"""GET /metrics and the middleware that counts every request (metric definitions: s3gate/metrics.py).

Who may read /metrics is the ``metrics`` setting: ``admin`` (the default)
serves it to signed-in admins and their API tokens only (401 without
credentials, 403 for anyone else; 404 while authentication is off, since
then nobody is an admin); ``open`` to anyone who can reach the port; ``off``
to nobody (404).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .. import keys
from .. import metrics as m
from ..errors import Forbidden, NotFound, Unauthorized
from .accesslog import route_label
from .authn import BASIC_CHALLENGE, principal


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    """Outermost: times and counts each request once, with the status and the bytes the client got.

    A response is sent here with aiohttp's own prepare() and write_eof(),
    which aiohttp then finds done, so the duration and the bytes include
    writing it. That holds for a raised ``web.HTTPException`` (a redirect)
    too: in aiohttp 3 it is a Response, sent the same way.
    """
    started = time.monotonic()
    m.HTTP_IN_FLIGHT.inc()
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            await _send(request, exc)
            raise
        status = response.status
        await _send(request, response)
        return response
    except (asyncio.CancelledError, ConnectionError):
        status = 499  # the client went away (nginx's code for it)
        raise
    finally:
        m.HTTP_IN_FLIGHT.dec()
        content = request.content
        m.observe_request(
            route_label(request),
            request.method,
            status,
            time.monotonic() - started,
            getattr(content, "total_bytes", 0),
            request.writer.output_size if request.writer is not None else 0,
        )


async def _send(request: web.Request, response: web.StreamResponse) -> None:
    try:
        await response.prepare(request)  # both no-ops for a response the handler streamed itself
        await response.write_eof()
    except ConnectionError:
        pass  # the client left; aiohttp's own write_eof meets the same and logs it


def _may_read(request: web.Request) -> None:
    mode = request.app[keys.SETTINGS].metrics
    if mode == "open":
        return
    if mode == "off":
        raise NotFound("metrics are off (setting metrics)")
    if keys.POLICY not in request.app:
        raise NotFound('metrics are for admins and authentication is off: set metrics = "open" to serve them')
    who = principal(request)
    if not who.authenticated:
        raise Unauthorized(headers=BASIC_CHALLENGE)
    # A link's signer is not who is calling (and its signature is checked only for its object).
    if who.via == "link" or not who.admin:
        raise Forbidden("only an admin or an admin's API token may read /metrics")


async def scrape(request: web.Request) -> web.Response:
    _may_read(request)
    body = await asyncio.to_thread(m.render)  # reads every worker's file (or /proc): off the loop
    return web.Response(body=body, headers={"Content-Type": m.CONTENT_TYPE, "Cache-Control": "no-store"})
