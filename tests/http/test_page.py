"""The web page's server side against moto: GET /, hashed static files, /api/rights, /api/links, If-None-Match on PUT.

What the page does in a browser is tested in real Chromium (tests/ui).
"""

import re

import pytest

from s3gate import keys
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from s3gate.http import assets
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
SAME = {"Sec-Fetch-Site": "same-origin"}


# -- If-None-Match: * on PUT (RFC 9110 §13.1.2) ---------------------------------------------
async def test_put_if_none_match_star_refuses_an_existing_key_and_keeps_its_bytes(client, bucket, s3):
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"old")
    resp = await client.put(f"/files/{bucket}/a.txt", data=b"new", headers={"If-None-Match": "*"})
    assert resp.status == 412
    assert (await resp.json())["error"] == "precondition_failed"
    assert s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"old"

    resp = await client.put(f"/files/{bucket}/b.txt", data=b"fresh", headers={"If-None-Match": "*"})
    assert resp.status == 201
    assert s3.get_object(Bucket=bucket, Key="b.txt")["Body"].read() == b"fresh"

    resp = await client.put(f"/files/{bucket}/a.txt", data=b"new")  # no condition: replaced, as before
    assert resp.status == 201
    assert s3.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"new"


async def test_put_if_none_match_etag_list(client, bucket, s3):
    etag = s3.put_object(Bucket=bucket, Key="a.txt", Body=b"old")["ETag"]
    resp = await client.put(f"/files/{bucket}/a.txt", data=b"x", headers={"If-None-Match": f'"nope", W/{etag}'})
    assert resp.status == 412  # weak comparison matches
    resp = await client.put(f"/files/{bucket}/a.txt", data=b"x", headers={"If-None-Match": '"other"'})
    assert resp.status == 201


# -- the page and its files ------------------------------------------------------------------
async def test_page_without_auth_has_a_strict_csp_and_hashed_assets(client):
    resp = await client.get("/", headers={"Accept": "text/html"})
    assert resp.status == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["Cache-Control"] == "no-store"
    page = await resp.text()
    assert "<script>" not in page  # no inline script: only src= and JSON data blocks
    assert all(kind == "application/json" for kind in re.findall(r'<script type="([^"]+)"', page))
    for url in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
        resp = await client.get(url)
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        again = await client.get(url, headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304
    assert len(re.findall(r'(?:src|href)="/static/app\.[0-9a-f]{12}\.(?:js|css)"', page)) == 2


async def test_static_names_follow_the_bytes(client):
    name = assets.URLS["app.js"].rsplit("/", 1)[1]
    stale = re.sub(r"\.[0-9a-f]{12}\.", ".000000000000.", name)
    assert (await client.get(f"/static/{stale}")).status == 404
    assert (await client.get("/static/app.js")).status == 404


async def test_language_from_accept_language_and_the_switch(client):
    resp = await client.get("/", headers={"Accept-Language": "fr, es;q=0.9, en;q=0.5"})
    page = await resp.text()
    assert '<html lang="es">' in page and "Suelte aquí archivos o carpetas" in page
    resp = await client.get("/?lang=en", headers={"Accept-Language": "es"})
    assert '<html lang="en">' in await resp.text()
    assert resp.cookies["s3gate_lang"].value == "en"
    resp = await client.get("/", headers={"Accept-Language": "es"})  # the cookie wins now
    assert '<html lang="en">' in await resp.text()


def test_every_string_is_translated_and_used():
    assert assets.STRINGS["en"].keys() == assets.STRINGS["es"].keys()


# -- with auth -------------------------------------------------------------------------------
@pytest.fixture
async def auth_client(aiohttp_client, tmp_path, moto_endpoint, bucket):
    settings = make_settings(
        auth=True,
        login_delay=0,
        s3_endpoint=moto_endpoint,
        s3_access_key="testing",
        s3_secret_key="testing",
        data_dir=str(tmp_path / "data"),
        link_mode="gateway",
    )
    client = await aiohttp_client(create_app(settings))
    service = client.app[keys.AUTH]
    await service.add_user("carol", PASSWORD)
    await service.grant("carol", Rule.parse(f"{bucket}:read,list"))
    await service.grant("carol", Rule.parse(f"{bucket}/inbox:all"))
    return client


async def login(client, name="carol"):
    resp = await client.post("/login", json={"username": name, "password": PASSWORD}, headers=SAME)
    assert resp.status == 200


async def test_page_sends_a_stranger_to_the_login_form(auth_client):
    resp = await auth_client.get("/", headers={"Sec-Fetch-Mode": "navigate"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] in ("/login?next=/", "/login?next=%2F")
    await login(auth_client)
    resp = await auth_client.get("/", headers={"Sec-Fetch-Mode": "navigate"})
    assert resp.status == 200 and "carol" in await resp.text()


async def test_rights_answer_what_the_folder_allows(auth_client, bucket):
    await login(auth_client)
    resp = await auth_client.get(f"/api/rights?bucket={bucket}&prefix=")
    body = await resp.json()
    assert body["here"] == {"read": True, "list": True, "write": False, "delete": False}
    assert body["below"] == {"read": True, "list": True, "write": True, "delete": True}  # inbox/
    body = await (await auth_client.get(f"/api/rights?bucket={bucket}&prefix=inbox/")).json()
    assert body["here"]["write"] and body["here"]["delete"]
    body = await (await auth_client.get(f"/api/rights?bucket={bucket}&prefix=other/")).json()
    assert not body["below"]["write"]
    assert (await auth_client.get("/api/rights?bucket=&prefix=")).status == 400


async def test_links_for_the_copy_button(auth_client, bucket, s3):
    s3.put_object(Bucket=bucket, Key="inbox/a b.txt", Body=b"linked")
    await login(auth_client)
    resp = await auth_client.post("/api/links", json={"bucket": bucket, "key": "inbox/a b.txt"}, headers=SAME)
    assert resp.status == 200
    body = await resp.json()
    assert body["seconds"] > 0 and body["expires"].endswith("+00:00")
    path = body["url"].split("://", 1)[1].split("/", 1)[1]
    auth_client.session.cookie_jar.clear()
    got = await auth_client.get("/" + path)
    assert got.status == 200 and await got.read() == b"linked"

    await login(auth_client)
    cross = await auth_client.post(
        "/api/links", json={"bucket": bucket, "key": "inbox/a b.txt"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status == 403
    missing = await auth_client.post("/api/links", json={"bucket": bucket, "key": "inbox/none"}, headers=SAME)
    assert missing.status == 404
    bad = await auth_client.post("/api/links", data=b"[1]", headers={**SAME, "Content-Type": "application/json"})
    assert bad.status == 400


async def test_login_page_comes_from_the_ui_templates(auth_client):
    resp = await auth_client.get("/login?next=/")
    page = await resp.text()
    assert "<style" not in page and f'href="{assets.URLS["app.css"]}"' in page
    assert "style-src 'self'" in resp.headers["Content-Security-Policy"]
    assert '<form method="post" action="/login">' in page and 'name="next" value="/"' in page
