"""The one place errors become responses, plus request ids.

Style follows the client: HTML for browsers (Accept: text/html), JSON under
/files/ and /api/, plain text lines on the seed's routes (curl).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import secrets

from aiohttp import web

from .. import keys
from ..errors import GatewayError
from .accesslog import escape

log = logging.getLogger("s3gate.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def error_style(request: web.Request) -> str:
    if "text/html" in request.headers.get("Accept", ""):
        return "html"
    path = request.path
    if path.startswith(("/files", "/api", "/readyz")):
        return "json"
    return "text"


def render_error(request: web.Request, status: int, code: str, message: str, headers=None) -> web.Response:
    style = error_style(request)
    rid = request.get(keys.REQUEST_ID, "")
    headers = dict(headers or {})
    if style == "json":
        body = json.dumps({"error": code, "message": message, "status": status, "request_id": rid})
        return web.Response(status=status, text=body + "\n", content_type="application/json", headers=headers)
    if style == "html":
        text = html.escape(message)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>"
            f"{status} {text}</title></head><body><h1>{status}</h1><p>{text}</p>"
            f"<p><small>request {html.escape(rid)}</small></p></body></html>\n"
        )
        return web.Response(status=status, text=page, content_type="text/html", headers=headers)
    return web.Response(status=status, text=message + "\n", content_type="text/plain", headers=headers)


@web.middleware
async def request_id_middleware(request: web.Request, handler):
    rid = request.headers.get("X-Request-Id", "")
    if not _SAFE_ID.match(rid):
        rid = secrets.token_hex(8)
    request[keys.REQUEST_ID] = rid
    return await handler(request)


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: X-Request-Id on every response as its head is sent.

    A middleware sees a streamed response (downloads, /listfiles/) only after
    the handler prepared it and its headers were gone; the signal runs inside
    prepare(), for those, for returned responses and raised HTTP exceptions.
    """
    rid = request.get(keys.REQUEST_ID)
    if rid is None:  # the app's middlewares did not run (none known; keep the promise anyway)
        rid = request[keys.REQUEST_ID] = secrets.token_hex(8)
    response.headers["X-Request-Id"] = rid


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except GatewayError as exc:
        if exc.status >= 500:
            log.warning(
                "%s %s -> %s %s [%s]",
                escape(request.method),
                escape(request.path),
                exc.status,
                escape(exc.message),
                request.get(keys.REQUEST_ID),
            )
        return render_error(request, exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Router 404/405, aiohttp's own 413 and friends: same look as ours.
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
        code = exc.reason.lower().replace(" ", "_")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason.lower()
        return render_error(request, exc.status, code, message, headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        rid = request.get(keys.REQUEST_ID, "")
        log.exception("unhandled error in %s %s [%s]", escape(request.method), escape(request.path), rid)
        return render_error(request, 500, "internal_error", f"internal error (request id {rid})")
