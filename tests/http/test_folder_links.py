"""Gateway-signed links to a folder archive: ?archive=FMT&mode=redirect mints, the link alone downloads.

The real gateway (create_app + moto), auth on: the link reads with its
signer's rights at the time of use, opens that one folder's archive in that
one format, and nothing else.
"""

from __future__ import annotations

import time

import pytest
from yarl import URL

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from tests.http.test_cross_site import NAVIGATE, OWN
from tests.http.test_folders import OUTSIDE, TREE, basic, members, put_all, relative


@pytest.fixture
async def gateway(aiohttp_client, settings, s3, bucket):
    put_all(s3, bucket, {**TREE, **OUTSIDE})
    app = create_app(settings_mod.replace(settings, auth=True, login_delay=0))
    client = await aiohttp_client(app)
    service = app[keys.AUTH]
    # alice may read and list the bucket; carol may list photos/ but read only photos/sub dir/;
    # dave may read photos/ but not list it.
    await service.add_user("alice", "correct horse battery staple")
    await service.grant("alice", Rule.make(bucket, "", "read,list"))
    await service.add_user("carol", "correct horse battery staple")
    await service.grant("carol", Rule.make(bucket, "photos", "list"))
    await service.grant("carol", Rule.make(bucket, "photos/sub dir", "read"))
    await service.add_user("dave", "correct horse battery staple")
    await service.grant("dave", Rule.make(bucket, "photos", "read"))
    return client


@pytest.fixture
async def anonymous(aiohttp_client, gateway):
    return await aiohttp_client(gateway.server)  # the same gateway, no credentials


async def mint(client, bucket: str, folder: str, fmt: str, user: str = "alice", headers=None) -> URL:
    resp = await client.get(
        f"/files/{bucket}/{folder}?archive={fmt}&mode=redirect",
        headers={**basic(user), **(headers or {})},
        allow_redirects=False,
    )
    assert resp.status == 302, await resp.text()
    location = URL(resp.headers["Location"])
    assert (await resp.text()).strip() == str(location)  # curl without -L prints it, as /downloads3/ does
    return location


async def test_a_folder_archive_link_downloads_without_credentials(gateway, anonymous, bucket):
    for fmt in ("zip", "tar", "tar.gz"):
        link = await mint(gateway, bucket, "photos/", fmt)
        assert link.path == f"/files/{bucket}/photos/"
        assert link.query["archive"] == fmt and link.query["by"] == "alice"
        resp = await anonymous.get(link.path_qs)
        assert resp.status == 200
        assert resp.headers["Content-Disposition"].startswith(f'attachment; filename="photos.{fmt}"')
        assert members(fmt, await resp.read()) == relative(TREE, "photos/")


async def test_a_whole_bucket_link(gateway, anonymous, bucket):
    link = await mint(gateway, bucket, "", "tar")
    resp = await anonymous.get(link.path_qs)
    assert resp.status == 200
    assert members("tar", await resp.read()) == {**TREE, **OUTSIDE}


async def test_the_link_reads_with_its_signers_rights(gateway, anonymous, bucket):
    link = await mint(gateway, bucket, "photos/", "zip", user="carol")
    resp = await anonymous.get(link.path_qs)
    assert resp.status == 200
    readable = {k: v for k, v in TREE.items() if k.startswith("photos/sub dir/")}
    assert members("zip", await resp.read()) == relative(readable, "photos/")


async def refused(client, url: str, query) -> str:
    resp = await client.get(url, params=query, allow_redirects=False)
    text = await resp.text()
    assert resp.status == 403, (url, resp.status, text)
    assert "Location" not in resp.headers and "PK" not in text
    return text


async def test_a_link_opens_nothing_but_its_own_archive(gateway, anonymous, bucket):
    link = await mint(gateway, bucket, "photos/", "zip")
    q = dict(link.query)
    base = f"/files/{bucket}"
    await refused(anonymous, f"{base}/photos/", {**q, "sig": q["sig"][:-2] + ("AA" if q["sig"][-2:] != "AA" else "BB")})
    await refused(anonymous, f"{base}/photos/", {**q, "expires": str(int(q["expires"]) + 3600)})
    await refused(anonymous, f"{base}/photos/", {**q, "by": "carol"})
    await refused(anonymous, f"{base}/photos/", {**q, "archive": "tar"})  # another format
    await refused(anonymous, f"{base}/other/", q)  # another folder
    await refused(anonymous, f"{base}/photos/sub%20dir/", q)  # even one inside it
    await refused(anonymous, f"{base}/", q)  # or the bucket around it
    await refused(anonymous, f"{base}/photos-private/", q)
    await refused(anonymous, f"{base}/photos/a.txt", q)  # a single object
    listing = {k: v for k, v in q.items() if k != "archive"}
    await refused(anonymous, f"{base}/photos/", listing)  # the folder's listing
    await refused(anonymous, f"{base}/photos/", {**listing, "format": "json"})
    await refused(anonymous, f"{base}/photos/a.txt", listing)
    await refused(anonymous, f"/listfiles/{bucket}/", q)
    # The untouched link still works: the refusals were about what they asked for.
    assert (await anonymous.get(link.path_qs)).status == 200


async def test_an_expired_link_is_refused(gateway, anonymous, bucket):
    q = gateway.app[keys.LINKS].sign(bucket, "photos/", lifetime=60, by="alice", archive="zip", now=time.time() - 120)
    assert "expired" in await refused(anonymous, f"/files/{bucket}/photos/", q)
    fresh = gateway.app[keys.LINKS].sign(bucket, "photos/", lifetime=60, by="alice", archive="zip")
    assert (await anonymous.get(f"/files/{bucket}/photos/", params=fresh)).status == 200


async def test_object_links_and_archive_links_never_stand_for_each_other(gateway, anonymous, bucket):
    signer = gateway.app[keys.LINKS]
    # An object link whose "key" is the folder's name, with archive= added: not an archive link.
    as_object = signer.sign(bucket, "photos/", lifetime=60, by="alice")
    await refused(anonymous, f"/files/{bucket}/photos/", {**as_object, "archive": "zip"})
    # An archive link for a folder whose name is an object key: not an object link.
    as_archive = signer.sign(bucket, "photos/a.txt", lifetime=60, by="alice", archive="zip")
    await refused(anonymous, f"/files/{bucket}/photos/a.txt", as_archive)
    await refused(anonymous, f"/files/{bucket}/photos/a.txt", {k: v for k, v in as_archive.items() if k != "archive"})


async def test_a_signer_who_loses_the_right_takes_the_link_with_them(gateway, anonymous, bucket):
    link = await mint(gateway, bucket, "photos/", "zip")
    assert (await anonymous.get(link.path_qs)).status == 200
    service = gateway.app[keys.AUTH]
    await service.revoke("alice", Rule.make(bucket, "", "read,list"))
    await service.grant("alice", Rule.make(bucket, "", "read"))  # reads all, lists nothing
    await refused(anonymous, link.path, dict(link.query))
    await service.grant("alice", Rule.make(bucket, "", "list"))
    assert (await anonymous.get(link.path_qs)).status == 200
    await service.set_disabled("alice", True)
    await refused(anonymous, link.path, dict(link.query))


async def test_who_may_mint(gateway, anonymous, bucket):
    # Anyone who may download the archive (list rights on the folder): carol above, alice here.
    await mint(gateway, bucket, "photos/", "zip")
    # dave may read photos/ but not list it: no archive, no link to one.
    resp = await gateway.get(f"/files/{bucket}/photos/?archive=zip&mode=redirect", headers=basic("dave"))
    assert resp.status == 403 and "Location" not in resp.headers
    # Anonymous: asked for credentials.
    resp = await anonymous.get(f"/files/{bucket}/photos/?archive=zip&mode=redirect", allow_redirects=False)
    assert resp.status == 401 and "WWW-Authenticate" in resp.headers
    # A missing bucket is a 404 now, not a dead link later (for an admin, who may list it).
    await gateway.app[keys.AUTH].add_user("root", "correct horse battery staple", admin=True)
    resp = await gateway.get("/files/no-such-bucket-here/?archive=zip&mode=redirect", headers=basic("root"))
    assert resp.status == 404
    resp = await gateway.get(f"/files/{bucket}/photos/?archive=zip&mode=sideways", headers=basic("alice"))
    assert resp.status == 400


async def test_minting_is_refused_cross_site(gateway, bucket):
    resp = await gateway.get(
        f"/files/{bucket}/photos/?archive=zip&mode=redirect",
        headers={**basic("alice"), **NAVIGATE},
        allow_redirects=False,
    )
    assert resp.status == 403
    assert "Location" not in resp.headers and "sig=" not in await resp.text()
    await mint(gateway, bucket, "photos/", "zip", headers=OWN)  # from the gateway's own page: fine


async def test_a_link_cannot_mint_another(gateway, anonymous, bucket):
    link = await mint(gateway, bucket, "photos/", "zip")
    for url in (f"/files/{bucket}/photos/", f"/files/{bucket}/other/"):
        text = await refused(anonymous, url, {**link.query, "mode": "redirect"})
        assert "sig=" not in text
    resp = await anonymous.post("/api/links", json={"bucket": bucket, "key": "photos/a.txt"}, params=dict(link.query))
    assert resp.status in (401, 403) and "sig=" not in await resp.text()


async def test_links_with_auth_off(client, s3, bucket):
    put_all(s3, bucket, TREE)
    resp = await client.get(f"/files/{bucket}/photos/?archive=tar&mode=redirect", allow_redirects=False)
    assert resp.status == 302
    link = URL(resp.headers["Location"])
    assert "by" not in link.query
    resp = await client.get(link.path_qs)
    assert resp.status == 200 and members("tar", await resp.read()) == relative(TREE, "photos/")
    await refused(client, f"/files/{bucket}/photos/", {**link.query, "archive": "zip"})
    await refused(client, f"/files/{bucket}/", dict(link.query))
