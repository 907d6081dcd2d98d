"""The plain-HTTP port of a direct-TLS gateway (http_redirect_port): 308 to https, nothing else (issue 11, item 4)."""

from __future__ import annotations

import asyncio

import pytest

from s3gate.http.redirect import redirect_app


@pytest.mark.parametrize(
    "host, location",
    [
        ("files.example.org", "https://files.example.org/a/b%20c?x=1&y=%26z"),
        ("files.example.org:80", "https://files.example.org/a/b%20c?x=1&y=%26z"),
        ("[2001:db8::1]:8080", "https://[2001:db8::1]/a/b%20c?x=1&y=%26z"),
        ("192.0.2.7:8080", "https://192.0.2.7/a/b%20c?x=1&y=%26z"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "POST", "DELETE"])
async def test_308_to_https_keeping_path_query_and_host(aiohttp_client, host, location, method):
    client = await aiohttp_client(redirect_app(443))
    resp = await client.request(method, "/a/b%20c?x=1&y=%26z", headers={"Host": host}, allow_redirects=False)
    assert resp.status == 308  # RFC 9110 section 15.4.9: the method and body are repeated
    assert resp.headers["Location"] == location


async def test_the_https_port_replaces_the_requests_port(aiohttp_client):
    client = await aiohttp_client(redirect_app(8443))
    resp = await client.get("/", headers={"Host": "localhost:8080"}, allow_redirects=False)
    assert resp.headers["Location"] == "https://localhost:8443/"


async def test_put_with_expect_gets_308_before_any_body(aiohttp_client):
    """No 100 Continue: the client learns at once that its body belongs on the https side."""
    client = await aiohttp_client(redirect_app(443))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
    await writer.drain()
    status = await reader.readline()
    assert status.startswith(b"HTTP/1.1 308"), status
    writer.close()


@pytest.mark.parametrize("host", ["", "bad host", "evil.example/path", "h:port"])
async def test_no_usable_host_is_400(aiohttp_client, host):
    client = await aiohttp_client(redirect_app(443))
    resp = await client.get("/", headers={"Host": host}, allow_redirects=False)
    assert resp.status == 400
    assert "Location" not in resp.headers


async def test_fallback_host_for_a_client_without_host(aiohttp_client):
    client = await aiohttp_client(redirect_app(443, "files.example.org"))
    resp = await client.get("/x", headers={"Host": ""}, allow_redirects=False)
    assert resp.status == 308 and resp.headers["Location"] == "https://files.example.org/x"
