"""X-Forwarded-* believed only from trusted_proxies, the client found from the right (issue 11, item 3).

The real gateway (create_app + moto). aiohttp's test client connects from
127.0.0.1: with ``trusted_proxies = "127.0.0.1"`` it plays the proxy; with
``"127.0.0.2"`` it is a client talking straight to the gateway, whose forged
headers must change nothing. One test also connects from the real source
address 127.0.0.2 (loopback 127/8 works on Linux) to the same server.
"""

from __future__ import annotations

import base64
import json
import logging

import aiohttp
import pytest
from multidict import CIMultiDict

from s3gate import keys
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from s3gate.auth.throttle import address_key
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
PROXY = "127.0.0.1"  # the test client's address: trusted, it is the proxy
ELSEWHERE = "127.0.0.2"  # trusted, but not the test client: its headers are its own
# What a client talking straight to the gateway could claim.
FORGED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


@pytest.fixture
def start(aiohttp_client, tmp_path, moto_endpoint, bucket):
    async def start(trusted_proxies: str, **overrides):
        settings = make_settings(
            s3_endpoint=moto_endpoint,
            s3_access_key="testing",
            s3_secret_key="testing",
            data_dir=str(tmp_path / f"data-{trusted_proxies}"),
            auth=True,
            login_delay=0,
            link_mode="gateway",
            audit_log="-",
            trusted_proxies=trusted_proxies,
            **overrides,
        )
        app = create_app(settings)
        client = await aiohttp_client(app)
        service = app[keys.AUTH]
        await service.add_user("alice", PASSWORD)
        await service.grant("alice", Rule.parse(f"{bucket}:read,list,write,delete"))
        client.service = service
        return client

    return start


async def failed_login(client, headers: dict[str, str], caplog) -> str:
    """The client address the audit log and the throttle saw for one bad password."""
    caplog.clear()
    resp = await client.get("/files/", headers={**basic("mallory", "not the password"), **headers})
    assert resp.status == 401
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "s3gate.audit"]
    [failed] = [e for e in events if e["event"] == "login_failed"]
    found = await client.service.store.failures([address_key(failed["remote"])])
    assert found[address_key(failed["remote"])].count >= 1  # throttled under the same address
    return failed["remote"]


@pytest.mark.parametrize(
    "trusted, expected",
    [(PROXY, "https://evil.example/files/"), (ELSEWHERE, "http://127.0.0.1:{port}/files/")],
    ids=["from-trusted-proxy", "forged-by-client"],
)
async def test_download_link_location(start, bucket, s3, trusted, expected):
    client = await start(trusted)
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"x")
    resp = await client.get(
        f"/downloads3/{bucket}/doc.txt", headers={**basic("alice", PASSWORD), **FORGED}, allow_redirects=False
    )
    assert resp.status == 302
    assert resp.headers["Location"].startswith(expected.format(port=client.port) + f"{bucket}/doc.txt?")


@pytest.mark.parametrize("trusted, secure", [(PROXY, True), (ELSEWHERE, False)], ids=["trusted", "forged"])
async def test_secure_cookie_flag(start, trusted, secure):
    client = await start(trusted)
    resp = await client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, headers=FORGED, allow_redirects=False
    )
    assert resp.status == 303
    assert bool(resp.cookies["s3gate_session"]["secure"]) is secure


@pytest.mark.parametrize("trusted, status", [(PROXY, 201), (ELSEWHERE, 403)], ids=["trusted", "forged"])
async def test_csrf_origin_check_uses_the_forwarded_host_only_from_a_proxy(start, bucket, trusted, status):
    client = await start(trusted)
    resp = await client.post("/login", data={"username": "alice", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 303
    # A page at https://evil.example PUTs with alice's cookie. Only a trusted proxy
    # may say that evil.example is the name clients use for this gateway.
    resp = await client.put(f"/files/{bucket}/a.txt", data=b"x", headers={"Origin": "https://evil.example", **FORGED})
    assert resp.status == status, await resp.text()


@pytest.mark.parametrize(
    "trusted, expected", [(PROXY, "203.0.113.9"), (ELSEWHERE, "127.0.0.1")], ids=["trusted", "forged"]
)
async def test_audit_and_throttle_address(start, caplog, trusted, expected):
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    client = await start(trusted)
    assert await failed_login(client, FORGED, caplog) == expected


@pytest.mark.parametrize(
    "chain, client_is",
    [
        # Walk from the right, past trusted proxies (127.0.0.1 and 10/8 here): the first other address.
        (["198.51.100.7, 10.1.1.1, 10.2.2.2"], "198.51.100.7"),
        # Whatever the client wrote to the left of the first untrusted hop is ignored.
        (["203.0.113.66, 198.51.100.7, 10.1.1.1"], "198.51.100.7"),
        # The chain split over two header lines reads as one (RFC 9110 section 5.3).
        (["203.0.113.66, 198.51.100.7", "10.1.1.1"], "198.51.100.7"),
        # Every hop is a trusted proxy: the client sits on a proxy's network; the left-most is it.
        (["10.3.3.3, 10.1.1.1"], "10.3.3.3"),
        # Not an address where an address was due: stop at the last hop a proxy vouched for.
        (["unknown, 10.1.1.1"], "10.1.1.1"),
        (["<script>"], "127.0.0.1"),
        # Ports and brackets, as some proxies write them; IPv4-mapped IPv6 as IPv4.
        (["[2001:db8::7]:4711, 10.1.1.1"], "2001:db8::7"),
        (["198.51.100.8:4711"], "198.51.100.8"),
        (["::ffff:198.51.100.9"], "198.51.100.9"),
        ([], "127.0.0.1"),  # a trusted peer that sent no chain is itself the client
    ],
)
async def test_client_is_the_right_most_untrusted_hop(start, caplog, chain, client_is):
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    client = await start("127.0.0.1/32, 10.0.0.0/8")
    headers = CIMultiDict(("X-Forwarded-For", value) for value in chain)
    assert await failed_login(client, headers, caplog) == client_is


async def test_forged_headers_from_another_source_address_change_nothing(start, bucket, s3, caplog):
    """One server trusting 127.0.0.1: its proxy is believed, a client at 127.0.0.2 is not."""
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    client = await start(PROXY)
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"x")
    url = f"http://127.0.0.1:{client.port}/downloads3/{bucket}/doc.txt"
    seen = {}
    for source in (PROXY, ELSEWHERE):
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            headers = {**basic("alice", PASSWORD), **FORGED}
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                assert resp.status == 302
                seen[source] = resp.headers["Location"]
            caplog.clear()
            async with session.get(f"http://127.0.0.1:{client.port}/files/", headers={**basic("x", "y"), **FORGED}):
                pass
            [failed] = [
                json.loads(r.getMessage())
                for r in caplog.records
                if r.name == "s3gate.audit" and '"login_failed"' in r.getMessage()
            ]
            seen[source + " remote"] = failed["remote"]
    assert seen[PROXY].startswith("https://evil.example/files/")
    assert seen[PROXY + " remote"] == "203.0.113.9"
    assert seen[ELSEWHERE].startswith(f"http://127.0.0.1:{client.port}/files/")
    assert seen[ELSEWHERE + " remote"] == ELSEWHERE


async def test_without_trusted_proxies_nothing_is_believed(start, caplog):
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    client = await start("")
    assert await failed_login(client, FORGED, caplog) == "127.0.0.1"
