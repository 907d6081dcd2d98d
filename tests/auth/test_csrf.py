"""CSRF: cookie (and browser-remembered Basic) writes from another site are refused."""

import pytest

from s3gate.auth import csrf
from s3gate.auth.rules import Rule

from .conftest import PASSWORD, basic, bearer


@pytest.mark.parametrize(
    "method, headers, refused",
    [
        ("GET", {"Sec-Fetch-Site": "cross-site"}, False),  # safe methods are never refused
        ("POST", {"Sec-Fetch-Site": "cross-site"}, True),
        ("PUT", {"Sec-Fetch-Site": "same-site"}, True),  # a sibling subdomain is another origin
        ("DELETE", {"Sec-Fetch-Site": "same-origin"}, False),
        ("POST", {"Sec-Fetch-Site": "none"}, False),  # typed in the address bar / bookmark
        ("POST", {"Origin": "https://evil.example"}, True),
        ("POST", {"Origin": "null"}, True),
        ("POST", {"Origin": "http://files.example.org"}, False),
        ("POST", {"Origin": "http://files.example.org:80"}, False),
        ("POST", {"Origin": "http://files.example.org:8080"}, True),
        ("POST", {}, False),  # curl, wget, scripts
        ("POST", {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"}, False),  # fetch metadata wins
    ],
)
def test_refusal_rules(method, headers, refused):
    assert bool(csrf.refusal(method, headers, {"files.example.org"})) is refused


def test_origins_compare_by_host_and_port():
    assert csrf.host_of("https://Files.Example.org:443") == "files.example.org"  # default ports dropped
    assert csrf.host_of("http://[::1]:8080") == "[::1]:8080"
    assert csrf.host_of("http://[2001:db8::1]:8080") != csrf.host_of("http://[::1]:8080")  # another site
    assert csrf.host_of("http://") is None  # no host at all
    assert csrf.refusal("POST", {"Origin": "http://"}, {"files.example.org"})  # refused, not a crash


async def logged_in(make_client):
    client, service = await make_client()
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse("files:all"))
    resp = await client.post("/login", data={"username": "alice", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 303
    return client, service


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST"])
async def test_cross_site_cookie_writes_are_refused(make_client, method):
    client, _ = await logged_in(make_client)
    resp = await client.request(method, "/files/files/a.txt", data=b"x", headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403
    assert "cross-site" in (await resp.json())["message"]
    resp = await client.request(method, "/files/files/a.txt", data=b"x", headers={"Origin": "https://evil.example"})
    assert resp.status == 403


async def test_same_origin_cookie_writes_pass(make_client):
    client, _ = await logged_in(make_client)
    origin = str(client.make_url("/")).rstrip("/")
    resp = await client.put("/files/files/a.txt", data=b"x", headers={"Sec-Fetch-Site": "same-origin", "Origin": origin})
    assert resp.status == 200
    resp = await client.put("/files/files/a.txt", data=b"x", headers={"Origin": origin})
    assert resp.status == 200
    resp = await client.get("/files/files/a.txt", headers={"Sec-Fetch-Site": "cross-site"})  # reads are fine
    assert resp.status == 200


async def test_basic_credentials_are_ambient_too_but_bearer_is_not(make_client):
    client, service = await make_client()
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse("files:all"))
    cross = {"Sec-Fetch-Site": "cross-site"}
    resp = await client.put("/files/files/a", data=b"x", headers={**basic("alice", PASSWORD), **cross})
    assert resp.status == 403
    secret, _ = await service.create_token("alice")
    resp = await client.put("/files/files/a", data=b"x", headers={**bearer(secret), **cross})
    assert resp.status == 200  # a page cannot make the browser attach a bearer token


async def test_login_and_logout_refuse_cross_site_posts(make_client):
    client, service = await make_client()
    await service.add_user("alice", PASSWORD)
    resp = await client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert resp.status == 403
    resp = await client.post("/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403


async def test_public_url_and_forwarded_host_are_our_origin(make_client, tmp_path):
    client, service = await make_client(public_url="https://files.example.org", trusted_proxies="127.0.0.1")
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse("files:all"))
    await client.post("/login", data={"username": "alice", "password": PASSWORD}, allow_redirects=False)
    resp = await client.put("/files/files/a", data=b"x", headers={"Origin": "https://files.example.org"})
    assert resp.status == 200
    resp = await client.put(
        "/files/files/a", data=b"x",
        headers={"Origin": "https://proxy.example.net", "X-Forwarded-Host": "proxy.example.net", "X-Forwarded-Proto": "https"},
    )
    assert resp.status == 200
