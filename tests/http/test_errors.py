"""One error middleware: right status, short message, style per client, no trace."""

import logging
import re
import socket

import botocore.exceptions
import pytest

from s3gate import settings as settings_mod
from s3gate.app import create_app
from s3gate.errors import BadRequest
from s3gate.storage.s3 import translate


async def test_styles_text_json_html(client):
    resp = await client.get("/listfiles/no-such-bucket-1/")
    assert resp.status == 404 and resp.content_type == "text/plain"
    assert await resp.text() == "bucket does not exist\n"
    resp = await client.get("/files/no-such-bucket-1/")
    body = await resp.json()
    assert body["error"] == "no_such_bucket" and body["status"] == 404 and body["request_id"]
    resp = await client.get("/files/no-such-bucket-1/", headers={"Accept": "text/html,*/*"})
    assert resp.content_type == "text/html"
    assert "bucket does not exist" in await resp.text()


async def test_unknown_route_and_wrong_method(client, bucket):
    resp = await client.get("/nowhere")
    assert resp.status == 404 and resp.content_type == "text/plain"
    resp = await client.request("PATCH", f"/files/{bucket}/a")
    assert resp.status == 405
    assert "PUT" in resp.headers.get("Allow", "")


async def test_request_id_echoed(client):
    # A client's id of 1-64 characters from [A-Za-z0-9._-] comes back as sent ...
    for rid in ("abc-123", "A.z_0-9", "x" * 64):
        resp = await client.get("/healthz", headers={"X-Request-Id": rid})
        assert resp.headers["X-Request-Id"] == rid
    # ... in an error's body too ...
    resp = await client.get("/files/no-such-bucket-1/", headers={"X-Request-Id": "err-42"})
    assert resp.headers["X-Request-Id"] == (await resp.json())["request_id"] == "err-42"
    # ... anything else is replaced by a fresh id of the gateway's own (16 hex digits).
    seen = set()
    for bad in ("bad id\twith tab", "x" * 65, "a/b", "ü", "a b", None):
        resp = await client.get("/healthz", headers={"X-Request-Id": bad} if bad is not None else {})
        fresh = resp.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{16}", fresh), (bad, fresh)
        seen.add(fresh)
    assert len(seen) == 6  # a new one every time


async def test_storage_down_is_503_without_trace(aiohttp_client, settings, caplog):
    # A bound socket that never listens: connections are refused, and no other
    # test server can take the port meanwhile.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{hole.getsockname()[1]}"
    c = await aiohttp_client(create_app(settings_mod.replace(settings, s3_endpoint=dead, s3_timeout=2)))
    with caplog.at_level(logging.WARNING):
        for method, path in (("GET", "/files/bkt/a.txt"), ("PUT", "/files/bkt/a.txt"), ("GET", "/readyz")):
            resp = await c.request(method, path, data=b"x" if method == "PUT" else None)
            assert resp.status == 503, (method, path)
            text = await resp.text()
            assert "storage" in text and "Traceback" not in text
    resp = await c.get("/healthz")
    assert resp.status == 503  # a store on this machine that is down: /healthz says so (issue 7, item 13)
    hole.close()


async def test_health_and_ready(client):
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"


def test_a_store_refusing_a_long_segment_says_which_limit():
    # MinIO, and SeaweedFS with its default filer.toml, answer KeyTooLongError for a
    # segment over 255 bytes although the key is within S3's 1,024 (issue 7, item 14).
    refusal = botocore.exceptions.ClientError(
        {
            "Error": {"Code": "KeyTooLongError", "Message": "Your key is too long."},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "PutObject",
    )
    with pytest.raises(BadRequest) as caught, translate("files", "docs/" + "é" * 150 + "/a.txt"):
        raise refusal
    assert caught.value.status == 400
    assert caught.value.message == (
        "the storage refused the key: a '/'-separated segment of 300 bytes is over "
        "its limit per segment (255 bytes on MinIO and on SeaweedFS by default)"
    )
