"""One error middleware: right status, short message, style per client, no trace."""

import logging
import socket

from s3gate import settings as settings_mod
from s3gate.app import create_app


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
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith tab"})
    assert resp.headers["X-Request-Id"] != "bad id\twith tab"


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
    assert resp.status == 200
    hole.close()


async def test_health_and_ready(client):
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"
