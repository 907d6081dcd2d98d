"""The plain-HTTP port of a gateway serving TLS itself (http_redirect_port): a 308 to https, nothing else.

gunicorn applies its certificate to every address it binds, so this listener
cannot be a second gunicorn bind: the launcher runs it in a thread of its own
process (it serves no files and holds no credentials, so one small event
loop is plenty).

308, not 301: a client that follows it repeats the method and the body
(RFC 9110 section 15.4.9), so ``curl -L -T file http://...`` still PUTs.
The Location keeps the path and query as sent and the host the client used,
with the HTTPS port in place of this one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from aiohttp import web

from ..settings import valid_host


def _hostname(host_header: str) -> str | None:
    """'example.org:80' -> 'example.org', '[::1]:80' -> '[::1]'; None when it is not a host."""
    if host_header.startswith("["):
        name, bracket, rest = host_header.partition("]")
        name += bracket
        port = rest.removeprefix(":")
    else:
        name, _, port = host_header.partition(":")
    if (port and not port.isdigit()) or not valid_host(name):
        return None
    return name


def redirect_app(https_port: int, fallback_host: str = "") -> web.Application:
    """FALLBACK_HOST names the gateway for an HTTP/1.0 client that sends no Host (from public_url)."""
    suffix = "" if https_port == 443 else f":{https_port}"

    async def redirect(request: web.Request) -> web.Response:
        name = _hostname(request.headers.get("Host", "") or fallback_host)
        if name is None:
            # RFC 9112 section 3.2: a request without a usable Host is answered 400.
            return web.Response(status=400, text="a Host header naming this server is required\n")
        # raw_path: the path and query exactly as the client sent them (still percent-encoded).
        path = request.raw_path if request.raw_path.startswith("/") else "/"
        location = f"https://{name}{suffix}{path}"
        return web.Response(
            status=308, headers={"Location": location}, text=f"use {location}\n", content_type="text/plain"
        )

    async def no_100_continue(request: web.Request) -> None:
        """Answer 308 at once instead of 100 Continue: the body belongs on the https side
        (RFC 9110 section 10.1.1 lets a server send the final status instead)."""

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect, expect_handler=no_100_continue)
    return app


class RedirectServer:
    """redirect_app on HOST:PORT, served by an event loop in a daemon thread of the calling process."""

    def __init__(self, host: str, port: int, https_port: int, fallback_host: str = ""):
        self.host, self.port = host, port
        self.app = redirect_app(https_port, fallback_host)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listening when this returns; a bind error is raised here."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="s3gate-redirect", daemon=True)
        self._thread.start()
        ready.result()

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(self.app, access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, self.host, self.port, reuse_address=True).start())
        except BaseException as exc:  # handed to start()'s caller
            ready.set_exception(exc)
        else:
            ready.set_result(None)
            loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
