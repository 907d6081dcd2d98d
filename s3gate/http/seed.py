"""The seed's four routes, answering as the Flask script did: text lines, JSON listing.

curl http://HOST:5000/downloads3/BUCKET/KEY        -> prints a download URL (and 302s to it)
curl -F 'file=@/path/to/file' http://HOST:5000/uploads3/BUCKET
curl http://HOST:5000/listfiles/BUCKET/
curl http://HOST:5000/deletefile/BUCKET/KEY        (GET, as the seed; DELETE too)
"""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..storage.names import check_bucket, check_key
from . import access, downloads, listing, uploads


async def download_link(request: web.Request) -> web.Response:
    bucket = check_bucket(request.match_info["bucket"])
    key = check_key(request.match_info["path"])
    await access.require_link_minting(request, bucket, key)
    return await downloads.redirect_to_link(request, bucket, key, access.principal_name(request))


async def upload(request: web.Request) -> web.Response:
    bucket = check_bucket(request.match_info["bucket"])
    await access.require(request, "write", bucket, "")
    await request.app[keys.STORAGE].require_bucket(bucket)
    await uploads.send_continue(request)
    results = await uploads.receive_form(request, bucket, "")
    lines = [f"uploaded {r.key} ({r.size} bytes) sha256={r.sha256}" for r in results]
    return web.Response(status=201, text="\n".join(lines) + "\n")


async def list_files(request: web.Request) -> web.StreamResponse:
    bucket = check_bucket(request.match_info["bucket"])
    return await listing.stream_all(request, bucket)


async def delete_file(request: web.Request) -> web.Response:
    bucket = check_bucket(request.match_info["bucket"])
    key = check_key(request.match_info["path"])
    await access.require(request, "delete", bucket, key)
    await request.app[keys.STORAGE].delete(bucket, key)
    return web.Response(text=f"deleted {key}\n")
