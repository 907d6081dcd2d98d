"""The REST face: /files/BUCKET/KEY (GET, HEAD, PUT, POST, DELETE) and listings."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import keys
from ..auth import csrf
from ..errors import BadRequest, MethodNotAllowed, NoSuchKey, PreconditionFailed
from ..storage.names import check_bucket, check_key
from ..storage.writer import UploadResult
from . import access, downloads, extract, folders, forwarded, links, listing, uploads
from .paths import check_prefix, object_path
from .responses import json_response


def result_json(r: UploadResult) -> dict[str, Any]:
    return {"bucket": r.bucket, "key": r.key, "size": r.size, "etag": r.etag.strip('"'), "sha256": r.sha256}


def result_headers(r: UploadResult) -> dict[str, str]:
    return {"ETag": r.etag, "X-Checksum-Sha256": r.sha256}


def target(request: web.Request) -> tuple[str, str]:
    return check_bucket(request.match_info["bucket"]), request.match_info.get("path", "")


async def bucket_root(request: web.Request) -> web.StreamResponse:
    bucket, _ = target(request)
    if request.method in ("PUT", "POST") and "extract" in request.query:
        return await extract.extract(request, bucket, "")  # a tar stream: every file under the bucket
    if request.method == "PUT":
        raise BadRequest("a PUT needs an object key, or ?extract=tar to unpack a tar stream here")
    if request.method == "POST":
        return await post_form(request, bucket, "")
    if request.method == "DELETE":  # the objects, never the bucket itself
        return await folders.delete_folder(request, bucket, "")
    if "archive" in request.query:
        return await folders.archive(request, bucket, "")
    return await listing.list_page(request, bucket, "")


async def object_route(request: web.Request) -> web.StreamResponse:
    bucket, path = target(request)
    method = request.method
    if method in ("PUT", "POST") and "extract" in request.query:
        return await extract.extract(request, bucket, extract.target_folder(path))
    if method in ("GET", "HEAD"):
        if path.endswith("/"):
            if "archive" in request.query:
                return await folders.archive(request, bucket, check_prefix(path))
            return await listing.list_page(request, bucket, check_prefix(path))
        return await download(request, bucket, check_key(path))
    if method == "PUT":
        return await put_object(request, bucket, check_key(path))
    if method == "POST":
        return await post_form(request, bucket, check_prefix(path))
    if method == "DELETE":
        if path.endswith("/"):
            return await folders.delete_folder(request, bucket, check_prefix(path))
        if "recursive" in request.query:
            raise BadRequest("a recursive delete needs a folder path ending in '/'")
        return await delete_object(request, bucket, check_key(path))
    raise MethodNotAllowed(headers={"Allow": "GET, HEAD, PUT, POST, DELETE"})


async def download(request: web.Request, bucket: str, key: str) -> web.StreamResponse:
    if links.is_signed(request.query):
        # A gateway-signed link stands in for credentials, for this object only.
        links.verify_request(request, bucket, key)
        # ... as long as its signer may still read it (the auth room checks
        # the signer's current rights and writes the audit line).
        await access.require(request, "read", bucket, key)
        return await downloads.proxy(request, bucket, key)
    await access.require(request, "read", bucket, key)
    mode = downloads.requested_mode(request)
    if (
        mode == "redirect"
        and request.method == "GET"
        and downloads.link_mode(request.app[keys.SETTINGS]) == "s3"
        and not csrf.cross_site(request.headers, forwarded.own_hosts(request))
    ):
        # A link is minted only for a request from this site (or curl): a
        # foreign page that sends the browser here gets the bytes, never a link.
        return await downloads.redirect_to_link(request, bucket, key, access.principal_name(request))
    return await downloads.proxy(request, bucket, key)


async def put_object(request: web.Request, bucket: str, key: str) -> web.Response:
    await access.require(request, "write", bucket, key)
    uploads.check_length(request)
    uploads.expected_checksums(request)  # malformed headers: 400 before the body
    await request.app[keys.STORAGE].require_bucket(bucket)
    await refuse_overwrite(request, bucket, key)
    await uploads.send_continue(request)
    result = await uploads.receive_body(request, bucket, key)
    body = result_json(result)
    return json_response(body, status=201, headers={**result_headers(result), "Location": object_path(bucket, key)})


async def refuse_overwrite(request: web.Request, bucket: str, key: str) -> None:
    """``If-None-Match: *`` (or a list of ETags): 412 when the key exists (or has one of them), before the body.

    RFC 9110 §13.1.2: "*" is false when the target has a current
    representation; the web page sends it so an upload never replaces an
    object the user did not choose to replace. Checked with a HEAD before
    the body is read, so two uploads racing for one new key can both pass
    (the later one wins): S3's own conditional PutObject is not offered by
    every store this gateway fronts.
    """
    if "If-None-Match" not in request.headers:
        return
    try:
        info = await request.app[keys.STORAGE].head(bucket, key)
    except NoSuchKey:
        return
    if downloads.if_none_match_hits(request, info.etag):
        raise PreconditionFailed(f"{key} already exists", headers={"ETag": info.etag})


async def post_form(request: web.Request, bucket: str, prefix: str) -> web.Response:
    await access.require(request, "write", bucket, prefix)
    await request.app[keys.STORAGE].require_bucket(bucket)
    await uploads.send_continue(request)
    results = await uploads.receive_form(request, bucket, prefix)
    return json_response({"uploaded": [result_json(r) for r in results]}, status=201)


async def delete_object(request: web.Request, bucket: str, key: str) -> web.Response:
    await access.require(request, "delete", bucket, key)
    await request.app[keys.STORAGE].delete(bucket, key)
    return json_response({"deleted": key, "bucket": bucket})
