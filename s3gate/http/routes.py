"""The route table: every URL the gateway answers, in one place."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from aiohttp import web

from .. import keys
from ..errors import GatewayError, StorageUnavailable
from ..netaddr import is_loopback_url
from . import authn_routes, files, listing, metrics, page, resumable, seed
from .responses import json_response
from .uploads import defer_continue


async def healthz(request: web.Request) -> web.Response:
    # Liveness, kept cheap. A store on this machine (the embedded SeaweedFS that
    # `s3gate serve` runs beside the workers) is part of this service: when its
    # port is shut, say so; the launcher restarts it or exits. A remote store's
    # trouble is /readyz's business.
    endpoint = request.app[keys.SETTINGS].s3_endpoint
    if endpoint and is_loopback_url(endpoint):
        url = urlsplit(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(url.hostname, port), timeout=1)
        except (OSError, TimeoutError):
            raise StorageUnavailable("the S3 store on this machine is down") from None
        writer.close()
        await writer.wait_closed()
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(request.app[keys.STORAGE].ping(), timeout=5)
    except TimeoutError:
        raise StorageUnavailable("storage did not answer within 5 s") from None
    except GatewayError as exc:  # no credentials, refused, ...: not ready is 503, never 502
        raise StorageUnavailable(exc.message) from None
    return json_response({"status": "ready"})


def setup(app: web.Application, *, auth: bool) -> None:
    r = app.router
    r.add_get("/healthz", healthz, allow_head=True)
    r.add_get("/readyz", readyz, allow_head=True)
    r.add_get("/metrics", metrics.scrape)  # Prometheus; who may read it: the metrics setting

    # The web page (s3gate/ui/) and the two answers only it needs.
    r.add_get("/", page.index)
    r.add_get("/static/{name}", page.static)
    r.add_get("/api/rights", page.rights)
    r.add_post("/api/links", page.new_link)

    # Resumable uploads (upload sessions on S3 multipart), for the page and for curl.
    r.add_post("/api/uploads", resumable.create)
    r.add_get("/api/uploads", resumable.mine)
    r.add_get("/api/uploads/{id}", resumable.status)
    r.add_delete("/api/uploads/{id}", resumable.abort)
    r.add_route("PUT", "/api/uploads/{id}/parts/{n}", resumable.put_part, expect_handler=defer_continue)
    r.add_post("/api/uploads/{id}/complete", resumable.complete)

    # The seed's routes, exactly as its users type them.
    r.add_get("/downloads3/{bucket}/{path:.+}", seed.download_link)
    for path in ("/uploads3/{bucket}", "/uploads3/{bucket}/"):
        r.add_route("POST", path, seed.upload, expect_handler=defer_continue)
    for path in ("/listfiles/{bucket}", "/listfiles/{bucket}/"):
        r.add_get(path, seed.list_files)
    r.add_route("GET", "/deletefile/{bucket}/{path:.+}", seed.delete_file)
    r.add_route("DELETE", "/deletefile/{bucket}/{path:.+}", seed.delete_file)

    # The REST face.
    r.add_get("/files", listing.list_buckets)
    r.add_get("/files/", listing.list_buckets)
    for path in ("/files/{bucket}", "/files/{bucket}/"):
        r.add_route("GET", path, files.bucket_root)
        r.add_route("HEAD", path, files.bucket_root)
        r.add_route("DELETE", path, files.bucket_root)  # ?recursive=1: every object, never the bucket
        r.add_route("POST", path, files.bucket_root, expect_handler=defer_continue)
        r.add_route("PUT", path, files.bucket_root, expect_handler=defer_continue)  # ?extract=tar
    for method in ("GET", "HEAD", "DELETE"):
        r.add_route(method, "/files/{bucket}/{path:.+}", files.object_route)
    for method in ("PUT", "POST"):
        r.add_route(method, "/files/{bucket}/{path:.+}", files.object_route, expect_handler=defer_continue)

    if auth:
        auth_routes(r)


def auth_routes(r: web.UrlDispatcher) -> None:
    """Sign-in and the caller's own API: only with auth on (they need app[keys.AUTH])."""
    r.add_get("/login", authn_routes.login_page)
    r.add_post("/login", authn_routes.login)
    r.add_post("/logout", authn_routes.logout)
    r.add_get("/api/whoami", authn_routes.whoami)
    r.add_get("/api/tokens", authn_routes.list_tokens)
    r.add_post("/api/tokens", authn_routes.create_token)
    r.add_delete("/api/tokens/{token_id}", authn_routes.revoke_token)
