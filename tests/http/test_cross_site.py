"""A foreign page must not change anything through a browser, whatever the method (issue 7, items 1 and 3).

The real gateway (create_app + moto). Browsers mark every request with
Sec-Fetch-Site; curl and wget send none, so the seed's commands keep working.
"""

from __future__ import annotations

import base64

import aiohttp
import pytest
from yarl import URL

from s3gate import keys
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
NAVIGATE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
IMAGE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
SIBLING = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate"}
OWN = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}


@pytest.fixture
def gateway_settings(tmp_path, moto_endpoint):
    def build(**overrides):
        overrides.setdefault("auth", True)
        return make_settings(
            s3_endpoint=moto_endpoint,
            s3_access_key="testing",
            s3_secret_key="testing",
            data_dir=str(tmp_path / "data"),
            login_delay=0,
            **overrides,
        )

    return build


@pytest.fixture
async def alice(aiohttp_client, gateway_settings, bucket):
    """A client signed in as alice (session cookie), who may do everything in the bucket."""
    app = create_app(gateway_settings(link_mode="gateway"))
    client = await aiohttp_client(app)
    service = app[keys.AUTH]
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse(f"{bucket}:read,list,write,delete"))
    resp = await client.post("/login", data={"username": "alice", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 303
    return client


def exists(s3, bucket: str, key: str) -> bool:
    return s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) > 0


@pytest.mark.parametrize("marks", [NAVIGATE, IMAGE, SIBLING], ids=["navigate", "img", "same-site"])
async def test_cross_site_get_deletefile_with_a_session_deletes_nothing(alice, bucket, s3, marks):
    s3.put_object(Bucket=bucket, Key="docs/c1.txt", Body=b"keep me")
    resp = await alice.get(f"/deletefile/{bucket}/docs/c1.txt", headers=marks)
    assert resp.status == 403
    assert "cross-site" in await resp.text()
    assert exists(s3, bucket, "docs/c1.txt")


async def test_cross_site_get_deletefile_with_remembered_basic_deletes_nothing(aiohttp_client, gateway_settings, bucket, s3):
    app = create_app(gateway_settings())
    client = await aiohttp_client(app)
    await app[keys.AUTH].add_user("alice", PASSWORD)
    await app[keys.AUTH].grant("alice", Rule.parse(f"{bucket}:all"))
    s3.put_object(Bucket=bucket, Key="docs/c1.txt", Body=b"keep me")
    resp = await client.get(f"/deletefile/{bucket}/docs/c1.txt", headers={**BASIC, **IMAGE})
    assert resp.status == 403
    assert exists(s3, bucket, "docs/c1.txt")
    # The same credentials from curl (no Sec-Fetch-*) work as the seed typed it.
    resp = await client.get(f"/deletefile/{bucket}/docs/c1.txt", headers=BASIC)
    assert resp.status == 200 and await resp.text() == "deleted docs/c1.txt\n"
    assert not exists(s3, bucket, "docs/c1.txt")


async def test_same_origin_and_typed_in_deletes_still_work(alice, bucket, s3):
    for i, marks in enumerate([OWN, {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}]):
        s3.put_object(Bucket=bucket, Key=f"docs/{i}.txt", Body=b"x")
        resp = await alice.get(f"/deletefile/{bucket}/docs/{i}.txt", headers=marks)
        assert resp.status == 200
        assert not exists(s3, bucket, f"docs/{i}.txt")


async def test_with_auth_off_a_foreign_page_still_cannot_delete_or_write(aiohttp_client, gateway_settings, bucket, s3):
    # Auth off: the browser on this machine reaching the loopback gateway is the credential.
    client = await aiohttp_client(create_app(gateway_settings(auth=False)))
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"keep me")
    assert (await client.get(f"/deletefile/{bucket}/a.txt", headers=IMAGE)).status == 403
    assert (await client.delete(f"/files/{bucket}/a.txt", headers={"Origin": "https://evil.example"})).status == 403
    resp = await client.put(f"/files/{bucket}/b.txt", data=b"x", headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403
    form = aiohttp.FormData()
    form.add_field("file", b"x", filename="c.txt")
    assert (await client.post(f"/uploads3/{bucket}", data=form, headers=NAVIGATE)).status == 403
    assert exists(s3, bucket, "a.txt") and not exists(s3, bucket, "b.txt")
    # Reading from a link on another site is fine: nothing changes.
    resp = await client.get(f"/files/{bucket}/a.txt", headers=NAVIGATE)
    assert resp.status == 200 and await resp.read() == b"keep me"
    # curl as the seed typed it.
    assert (await client.get(f"/deletefile/{bucket}/a.txt")).status == 200
    assert not exists(s3, bucket, "a.txt")


async def test_cross_site_never_mints_a_link(alice, bucket, s3):
    s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"hello")
    resp = await alice.get(f"/downloads3/{bucket}/docs/a.txt", headers=NAVIGATE, allow_redirects=False)
    assert resp.status == 403
    assert "Location" not in resp.headers and "sig=" not in await resp.text()
    resp = await alice.get(f"/downloads3/{bucket}/docs/a.txt", headers=OWN, allow_redirects=False)
    assert resp.status == 302 and "sig=" in resp.headers["Location"]


async def test_cross_site_redirect_mode_serves_bytes_instead_of_a_presigned_link(
    aiohttp_client, gateway_settings, bucket, s3
):
    client = await aiohttp_client(create_app(gateway_settings(auth=False, link_mode="s3", download_mode="redirect")))
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")
    resp = await client.get(f"/files/{bucket}/a.txt", headers=NAVIGATE, allow_redirects=False)
    assert resp.status == 200 and await resp.read() == b"hello"
    resp = await client.get(f"/files/{bucket}/a.txt", allow_redirects=False)
    assert resp.status == 302 and "X-Amz-Signature" in resp.headers["Location"]


async def test_redirect_mode_judges_a_browser_without_sec_fetch_site_by_its_origin(
    aiohttp_client, gateway_settings, bucket, s3
):
    # Browsers too old for Sec-Fetch-Site send only Origin: this site's gets the link, another's only the bytes.
    client = await aiohttp_client(create_app(gateway_settings(auth=False, link_mode="s3", download_mode="redirect")))
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")
    own = {"Origin": f"http://{client.host}:{client.port}"}
    resp = await client.get(f"/files/{bucket}/a.txt", headers=own, allow_redirects=False)
    assert resp.status == 302 and "X-Amz-Signature" in resp.headers["Location"]
    foreign = {"Origin": "https://evil.example"}
    resp = await client.get(f"/files/{bucket}/a.txt", headers=foreign, allow_redirects=False)
    assert resp.status == 200 and await resp.read() == b"hello"
    assert "Location" not in resp.headers


async def test_a_signed_link_downloads_but_never_mints_another(alice, bucket, s3, aiohttp_client):
    s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"hello")
    resp = await alice.get(f"/downloads3/{bucket}/docs/a.txt", allow_redirects=False)
    link = URL(resp.headers["Location"])
    anonymous = await aiohttp_client(alice.server)  # no cookie jar shared with alice
    resp = await anonymous.get(f"/files/{bucket}/docs/a.txt", params=dict(link.query))
    assert resp.status == 200 and await resp.read() == b"hello"
    # The same query on the minting route: refused, no fresh link.
    resp = await anonymous.get(f"/downloads3/{bucket}/docs/a.txt", params=dict(link.query), allow_redirects=False)
    assert resp.status == 403
    assert "Location" not in resp.headers and "sig=" not in await resp.text()
    # Nor through ?mode=redirect on the object itself.
    query = {**link.query, "mode": "redirect"}
    resp = await anonymous.get(f"/files/{bucket}/docs/a.txt", params=query, allow_redirects=False)
    assert resp.status == 200 and "Location" not in resp.headers


async def test_a_cross_site_refusal_is_in_the_audit_log(alice, bucket, s3, caplog):
    import json
    import logging

    caplog.set_level(logging.INFO, logger="s3gate.audit")
    s3.put_object(Bucket=bucket, Key="docs/c1.txt", Body=b"keep me")
    resp = await alice.get(f"/deletefile/{bucket}/docs/c1.txt", headers=IMAGE)
    assert resp.status == 403
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "s3gate.audit"]
    refused = [e for e in events if e["event"] == "csrf_refused"]
    assert refused and refused[-1]["outcome"] == "denied" and refused[-1]["user"] == "alice", events
    assert (refused[-1]["bucket"], refused[-1]["key"]) == (bucket, "docs/c1.txt")
    assert not any(e["event"] == "delete" for e in events)  # refused before any right was asked
