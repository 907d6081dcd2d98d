"""Browser sessions: the login page, cookie flags, logout and revocation that end a session at once."""

from http.cookies import SimpleCookie

import pytest

from s3gate.auth.rules import Rule
from s3gate.http.authn import COOKIE, safe_next

from .conftest import PASSWORD, basic

pytestmark = pytest.mark.usefixtures("users_backend")  # SQLite, then PostgreSQL


async def setup_alice(service):
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse("files/docs:read,write"))


def set_cookie(resp) -> SimpleCookie:
    jar = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        jar.load(header)
    return jar


async def login(client, name="alice", password=PASSWORD, headers=None, **extra):
    data = {"username": name, "password": password, **extra}
    return await client.post("/login", data=data, headers=headers or {}, allow_redirects=False)


async def test_the_login_page_speaks_spanish(make_client):
    client, service = await make_client(login_max_failures=2)
    await setup_alice(service)
    es = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}
    page = await (await client.get("/login?next=/files/", headers=es)).text()
    assert '<html lang="es">' in page and ">Entrar</button>" in page and ">Usuario</label>" in page
    # The switch keeps where the user was going, and is remembered.
    assert 'href="/login?next=%2Ffiles%2F&amp;lang=en"' in page
    resp = await client.get("/login?lang=en", headers=es)
    assert '<html lang="en">' in await resp.text() and resp.cookies["s3gate_lang"].value == "en"
    client.session.cookie_jar.clear()
    resp = await login(client, password="wrong password!", headers=es)
    assert resp.status == 401 and "Usuario o contraseña incorrectos." in await resp.text()
    await login(client, password="wrong password!", headers=es)
    resp = await login(client, password="wrong password!", headers=es)
    assert resp.status == 429 and "Demasiados intentos fallidos" in await resp.text()
    resp = await login(client, password="wrong password!")
    assert resp.status == 429 and "Too many failed logins: try again in" in await resp.text()


async def test_login_page_is_a_plain_form(make_client):
    client, _ = await make_client()
    resp = await client.get("/login?next=/files/files/docs/")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert '<form method="post" action="/login">' in page
    assert 'name="next" value="/files/files/docs/"' in page
    assert 'type="password"' in page
    assert resp.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


async def test_login_sets_a_safe_cookie_and_the_session_works(make_client):
    client, service = await make_client()
    await setup_alice(service)
    resp = await login(client, next="/files/files/docs/a.txt")
    assert resp.status == 303
    assert resp.headers["Location"] == "/files/files/docs/a.txt"
    morsel = set_cookie(resp)[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert not morsel["secure"]  # plain http, no trusted proxy
    assert morsel["path"] == "/"
    assert int(morsel["max-age"]) == 12 * 3600
    resp = await client.get("/files/files/docs/a.txt")  # the test client keeps the cookie
    assert resp.status == 200 and (await resp.json())["user"] == "alice"
    resp = await client.get("/files/files/other.txt")
    assert resp.status == 403
    page = await (await client.get("/login")).text()
    assert "Signed in as <strong>alice</strong>" in page


async def test_secure_flag_behind_a_trusted_proxy_only(make_client, tmp_path):
    client, service = await make_client(trusted_proxies="127.0.0.1")
    await setup_alice(service)
    resp = await login(client, headers={"X-Forwarded-Proto": "https"})
    assert set_cookie(resp)[COOKIE]["secure"] is True
    client2, _ = await make_client()  # the same users, trust off: the header is ignored
    resp = await login(client2, headers={"X-Forwarded-Proto": "https"})
    assert not set_cookie(resp)[COOKIE]["secure"]


async def test_secure_flag_over_real_tls(aiohttp_server, tmp_path, clock):
    import ssl
    import subprocess

    import aiohttp

    from .conftest import build_app, make_settings

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    app = build_app(make_settings(tmp_path), clock)
    server = await aiohttp_server(app, ssl=server_ctx)
    from s3gate import keys

    await setup_alice(app[keys.AUTH])
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"https://127.0.0.1:{server.port}/login", data={"username": "alice", "password": PASSWORD},
            ssl=client_ctx, allow_redirects=False,
        )
        assert resp.status == 303
        assert set_cookie(resp)[COOKIE]["secure"] is True


async def test_bad_login_shows_the_form_again(make_client):
    client, service = await make_client()
    await setup_alice(service)
    resp = await login(client, password="wrong password")
    assert resp.status == 401
    assert "WWW-Authenticate" not in resp.headers  # no browser pop-up over the form
    page = await resp.text()
    assert "Invalid user name or password." in page and 'value="alice"' in page
    assert COOKIE not in set_cookie(resp)
    resp = await login(client, name="", password="")
    assert resp.status == 401


async def test_json_login_and_logout(make_client):
    client, service = await make_client()
    await setup_alice(service)
    resp = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert resp.status == 200
    body = await resp.json()
    assert body["user"] == "alice" and body["expires"]
    assert (await client.get("/files/files/docs/a")).status == 200
    resp = await client.post("/logout", headers={"Accept": "application/json"})
    assert await resp.json() == {"logged_out": True}
    assert (await client.get("/files/files/docs/a")).status == 401
    resp = await client.post("/login", json={"username": "alice", "password": "nope nope nope"})
    assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"
    # JSON can carry a lone surrogate, which is not text: a wrong password, not a 500.
    raw = '{"username": "alice", "password": "\\ud800 nope"}'
    resp = await client.post("/login", data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == 401 and (await resp.json())["error"] == "unauthorized"


async def test_logout_ends_the_session_on_the_server(make_client):
    client, service = await make_client()
    await setup_alice(service)
    await login(client)
    session_id = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    resp = await client.post("/logout", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    cleared = set_cookie(resp)[COOKIE]
    assert cleared.value == "" and cleared["max-age"] == "0"
    # A copy of the old cookie (stolen, or a second tab) is dead too.
    client.session.cookie_jar.update_cookies({COOKIE: session_id})
    resp = await client.get("/files/files/docs/a")
    assert resp.status == 401


async def test_password_change_and_disable_end_sessions(make_client):
    client, service = await make_client()
    await setup_alice(service)
    await login(client)
    assert (await client.get("/files/files/docs/a")).status == 200
    await service.set_password("alice", "a brand new password")
    assert (await client.get("/files/files/docs/a")).status == 401
    await login(client, password="a brand new password")
    assert (await client.get("/files/files/docs/a")).status == 200
    await service.set_disabled("alice", True)
    assert (await client.get("/files/files/docs/a")).status == 401


async def test_logout_everywhere_and_enabling_again(make_client):
    client, service = await make_client()
    await setup_alice(service)
    await login(client)
    assert await service.set_disabled("alice", False) == 0  # enabling an enabled user ends nothing
    assert (await client.get("/files/files/docs/a")).status == 200
    assert await service.logout_everywhere("alice") == 1  # `s3gate users logout alice`
    assert (await client.get("/files/files/docs/a")).status == 401
    await login(client)
    assert await service.set_disabled("alice", True) == 1  # disabling ends (and counts) the session


async def test_a_removed_password_no_longer_signs_in(make_client):
    client, service = await make_client()
    await setup_alice(service)
    await service.set_password("alice", None)  # tokens only, from now on
    assert (await client.get("/files/files/docs/a", headers=basic("alice", PASSWORD))).status == 401
    assert (await login(client)).status == 401


async def test_sessions_expire(make_client, clock):
    client, service = await make_client(session_ttl=3600)
    await setup_alice(service)
    await login(client)
    clock.advance(3599)
    assert (await client.get("/files/files/docs/a")).status == 200
    clock.advance(1)  # exactly its expiry: over
    assert (await client.get("/files/files/docs/a")).status == 401


async def test_a_disabled_users_surviving_session_is_refused(make_client):
    """Disabling writes the flag, then deletes the sessions: a crash in between leaves them; they must not work."""
    client, service = await make_client()
    await setup_alice(service)
    await login(client)
    assert (await client.get("/files/files/docs/a")).status == 200
    user = await service.store.get_user("alice")
    await service.store.set_flags(user.id, disabled=True)  # the flag alone, sessions still stored
    assert (await client.get("/files/files/docs/a")).status == 401


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_session_ids_are_stored_hashed(make_client, tmp_path):
    import sqlite3

    client, service = await make_client()
    await setup_alice(service)
    await login(client)
    session_id = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("users.db*"))
    assert session_id.encode() not in raw
    with sqlite3.connect(tmp_path / "data" / "users.db") as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_a_new_session_purges_expired_ones(make_client, tmp_path, clock):
    import sqlite3

    client, service = await make_client(session_ttl=3600)
    await setup_alice(service)
    await login(client)
    clock.advance(3600)  # the first session has expired
    client.session.cookie_jar.clear()  # another browser: the login does not end the old session itself
    await login(client)
    with sqlite3.connect(tmp_path / "data" / "users.db") as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1  # only the new one is kept


async def test_garbage_cookie_is_just_anonymous(make_client):
    client, _ = await make_client()
    client.session.cookie_jar.update_cookies({COOKIE: "forged"})
    resp = await client.get("/files/files/a")
    assert resp.status == 401
    resp = await client.post("/logout", headers={"Accept": "application/json"})
    assert await resp.json() == {"logged_out": False}  # nothing was ended (and no logout audited)


def test_next_cannot_leave_the_site():
    assert safe_next("/files/x?y=1") == "/files/x?y=1"
    for bad in ("//evil.example", "https://evil.example/", "/\\evil.example", "evil", "", None, "javascript:alert(1)"):
        assert safe_next(bad) == "/"


async def test_open_redirect_refused_at_login(make_client):
    client, service = await make_client()
    await setup_alice(service)
    resp = await login(client, next="//evil.example/")
    assert resp.headers["Location"] == "/"


async def test_api_tokens_for_the_signed_in_user(make_client):
    client, service = await make_client()
    await setup_alice(service)
    await login(client)
    resp = await client.post("/api/tokens", json={"expires": "1d", "scope": ["files/docs:read"], "label": "ci"})
    assert resp.status == 201
    created = await resp.json()
    assert created["token"].startswith("s3g_") and created["scope"] == ["files/docs/:read"]
    listed = await (await client.get("/api/tokens")).json()
    assert [t["id"] for t in listed["tokens"]] == [created["id"]]
    assert "token" not in listed["tokens"][0]  # never shown again
    resp = await client.post("/api/tokens", json={"scope": ["files:delete"]})
    assert resp.status == 400
    # A token cannot mint tokens.
    resp = await client.post("/api/tokens", json={}, headers={"Authorization": f"Bearer {created['token']}"})
    assert resp.status == 403
    resp = await client.delete(f"/api/tokens/{created['id']}")
    assert resp.status == 200
    resp = await client.get("/files/files/docs/a", headers={"Authorization": f"Bearer {created['token']}"})
    assert resp.status == 401


async def test_a_new_login_ends_the_previous_session(make_client):
    client, service = await make_client()
    await setup_alice(service)
    await login(client)
    first = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    await login(client)
    second = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    assert first != second
    user = await service.store.get_user("alice")
    assert await service.store.count_sessions(user.id, service.clock()) == 1


async def test_authenticated_responses_are_private(make_client):
    client, service = await make_client()
    await setup_alice(service)
    await service.grant("*", Rule.parse("files/pub:read"))
    await login(client)
    resp = await client.get("/files/files/docs/a")
    assert resp.headers["Cache-Control"] == "private"
    client.session.cookie_jar.clear()
    resp = await client.get("/files/files/pub/a")
    assert resp.status == 200 and "Cache-Control" not in resp.headers
