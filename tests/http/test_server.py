"""What the server says and logs about requests it cannot parse, and what it emits (issue 7, items 5, 9, 12, 15).

The gateway runs under the runner production uses (``make_runner``, as
gunicorn's worker gets it from ``app_factory``), on a real socket, and the
raw bytes are written by hand: no client library would send them.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from s3gate import keys
from s3gate.app import create_app, make_runner
from s3gate.auth.rules import Rule
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
SECRETS = ("c2VjcmV0OnNlY3JldA", "s3g_TOKENSECRETTOKENSECRET", "SESSIONSECRET")


@pytest.fixture
async def served(tmp_path, moto_endpoint):
    """(port, app): the real app with auth on, served by the production runner on 127.0.0.1."""
    settings = make_settings(
        s3_endpoint=moto_endpoint,
        s3_access_key="testing",
        s3_secret_key="testing",
        data_dir=str(tmp_path / "data"),
        auth=True,
        login_delay=0,
    )
    app = create_app(settings)
    runner = make_runner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, app
    await runner.cleanup()


async def exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


def logged(caplog) -> str:
    return "\n".join(r.getMessage() + (caplog.text if r.exc_info else "") for r in caplog.records) + caplog.text


@pytest.mark.parametrize(
    "raw",
    [
        # Bare LF line endings: aiohttp's parser quotes the whole request in its error.
        b"GET /files/ HTTP/1.1\nHost: x\nAuthorization: Basic c2VjcmV0OnNlY3JldA==\n"
        b"Cookie: s3gate_session=SESSIONSECRET\n\n",
        # An invalid header token right after the credentials.
        b"GET /files/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3g_TOKENSECRETTOKENSECRET\r\n"
        b"Bad Header: SESSIONSECRET\r\n\r\n",
        # Not HTTP at all.
        b"s3g_TOKENSECRETTOKENSECRET SESSIONSECRET\r\n\r\n",
        # A header line over the limit.
        b"GET / HTTP/1.1\r\nHost: x\r\nCookie: s3gate_session=SESSIONSECRET" + b"A" * 9000 + b"\r\n\r\n",
    ],
    ids=["bare-lf", "bad-token", "not-http", "long-line"],
)
async def test_malformed_requests_never_echo_or_log_credentials(served, caplog, raw):
    port, _ = served
    caplog.set_level(logging.DEBUG)
    answer = await exchange(port, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"400", b"413", b"431")
    assert body.startswith(b"bad request") or body.startswith(b"request")
    everything = answer.decode("latin-1") + logged(caplog)
    for secret in SECRETS:
        assert secret not in everything
    assert "Traceback" not in everything


async def test_access_log_escapes_what_the_client_controls(served, caplog):
    port, _ = served
    caplog.set_level(logging.INFO, logger="s3gate.access")
    await exchange(port, b"GET /files/b/x%0a1.2.3.4%20%22GET%20/forged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "s3gate.access"]
    assert lines, "no access log line"
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert any("x\\x0a1.2.3.4 \\x22GET /forged" in line for line in lines)


async def test_login_with_a_header_in_next_redirects_home(served):
    port, app = served
    await app[keys.AUTH].add_user("alice", PASSWORD)
    form = f"username=alice&password={PASSWORD.replace(' ', '+')}&next=/%0d%0aX-Injected:%201".encode()
    answer = await exchange(
        port,
        b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form,
    )
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 303")
    assert "\r\nLocation: /\r\n" in head
    assert "X-Injected" not in head and "s3gate_session=" in head


async def test_upload_location_is_percent_encoded(served, s3, bucket):
    port, app = served
    await app[keys.AUTH].add_user("alice", PASSWORD)
    await app[keys.AUTH].grant("alice", Rule.parse(f"{bucket}:all"))
    auth = {"Authorization": aiohttp.encode_basic_auth("alice", PASSWORD)}
    async with aiohttp.ClientSession(headers=auth) as session:
        for raw_key, key in (("docs/a%3Fb%23c", "docs/a?b#c"), ("docs/%252e%252e", "docs/%2e%2e"), ("%C3%B1%20x", "ñ x")):
            url = f"http://127.0.0.1:{port}/files/{bucket}/{raw_key}"
            async with session.put(URL(url, encoded=True), data=b"x") as resp:
                assert resp.status == 201, await resp.text()
                location = resp.headers["Location"]
                assert (await resp.json())["key"] == key
            # Following the Location reaches the same object, and only it.
            async with session.get(URL(f"http://127.0.0.1:{port}{location}", encoded=True)) as got:
                assert got.status == 200 and await got.read() == b"x"
            assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 1
