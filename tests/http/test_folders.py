"""Whole folders against moto: ?archive=tar|tar.gz|zip out, DELETE ?recursive=1 (and &dry_run=1)."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import tarfile
import time
import zipfile

import pytest

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from s3gate.http.folders import REPORT_LIMIT, archive_reservation
from tests.conftest import keys_in

# A tree with the awkward cases: nesting, spaces, non-ASCII, a name over
# tar's 100-byte field, an empty file, a large-ish incompressible file.
TREE = {
    "photos/a.txt": b"hello\n" * 5000,
    "photos/sub dir/été/ünï cödé.txt": b"nested, unicode\n" * 100,
    "photos/deep/" + "x" * 120 + "/long.bin": os.urandom(5000),
    "photos/empty": b"",
    "photos/big.bin": os.urandom(3 * 1024 * 1024 + 17),
}
# Around the boundary: none of these is inside photos/.
OUTSIDE = {"photos": b"an object named photos", "photos-private/secret.txt": b"no", "other/x": b"y"}


def put_all(s3, bucket: str, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)


def members(fmt: str, body: bytes) -> dict[str, bytes]:
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(body)) as z:
            assert z.testzip() is None
            return {n: z.read(n) for n in z.namelist()}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as t:
        out = {}
        for m in t:
            assert m.isreg()
            out[m.name] = t.extractfile(m).read()
        return out


def relative(objects: dict[str, bytes], prefix: str) -> dict[str, bytes]:
    return {k[len(prefix) :]: v for k, v in objects.items() if k.startswith(prefix)}


@pytest.fixture
def tree(s3, bucket):
    put_all(s3, bucket, {**TREE, **OUTSIDE})
    return bucket


# -- archives -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt, content_type, is_gzip",
    [("tar", "application/x-tar", False), ("tar.gz", "application/gzip", True), ("zip", "application/zip", False)],
)
async def test_folder_archive_round_trips(client, tree, fmt, content_type, is_gzip):
    resp = await client.get(f"/files/{tree}/photos/?archive={fmt}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Content-Disposition"].startswith(f'attachment; filename="photos.{fmt}"')
    body = await resp.read()
    assert body.startswith(b"\x1f\x8b") == is_gzip
    # Exactly the folder: not the object named "photos", not photos-private/.
    assert members(fmt, body) == relative(TREE, "photos/")


async def test_archive_of_a_nested_folder_is_named_after_it(client, tree):
    resp = await client.get(f"/files/{tree}/photos/sub%20dir/?archive=zip")
    assert resp.status == 200
    assert 'filename="sub dir.zip"' in resp.headers["Content-Disposition"]
    assert members("zip", await resp.read()) == relative(TREE, "photos/sub dir/")


async def test_whole_bucket_archive_is_named_after_the_bucket(client, tree):
    resp = await client.get(f"/files/{tree}/?archive=tar")
    assert resp.status == 200
    assert f'filename="{tree}.tar"' in resp.headers["Content-Disposition"]
    assert members("tar", await resp.read()) == {**TREE, **OUTSIDE}


async def test_zip_stores_what_does_not_compress_and_deflates_the_rest(client, tree):
    body = await (await client.get(f"/files/{tree}/photos/?archive=zip")).read()
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        info = {i.filename: i for i in z.infolist()}
    assert info["a.txt"].compress_size < info["a.txt"].file_size / 10
    big = info["big.bin"]
    assert big.file_size <= big.compress_size < big.file_size * 1.01  # stored blocks: no time spent in vain


async def test_empty_folder_is_an_empty_archive(client, bucket):
    for fmt in ("tar", "tar.gz", "zip"):
        resp = await client.get(f"/files/{bucket}/nothing/?archive={fmt}")
        assert resp.status == 200
        assert members(fmt, await resp.read()) == {}


async def test_unsafe_names_and_folder_markers_are_left_out(client, s3, bucket):
    put_all(s3, bucket, {"f/ok.txt": b"ok", "f/marker/": b"", "f/a/../escape": b"x", "f//abs": b"x"})
    body = await (await client.get(f"/files/{bucket}/f/?archive=tar")).read()
    assert members("tar", body) == {"ok.txt": b"ok"}


async def test_bad_archive_format_is_400(client, tree):
    resp = await client.get(f"/files/{tree}/photos/?archive=rar")
    assert resp.status == 400
    assert "tar, tar.gz, zip" in (await resp.json())["message"]


async def test_archive_of_missing_bucket_is_404(client):
    resp = await client.get("/files/no-such-bucket-here/?archive=zip")
    assert resp.status == 404


async def test_head_of_an_archive_sends_headers_only(client, tree):
    resp = await client.head(f"/files/{tree}/photos/?archive=zip")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/zip"
    assert await resp.read() == b""


async def wait_for(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_archive_is_charged_to_the_budget_and_a_client_that_leaves_gives_it_back(
    aiohttp_client, settings, s3, bucket
):
    chunk = 256 * 1024
    put_all(s3, bucket, {f"big/{i}.bin": os.urandom(4 * 1024 * 1024) for i in range(4)})
    app = create_app(settings_mod.replace(settings, download_chunk=chunk))
    client = await aiohttp_client(app)
    budget = app[keys.BUDGET]
    resp = await client.get(f"/files/{bucket}/big/?archive=zip")
    assert resp.status == 200
    await resp.content.readexactly(64 * 1024)
    assert budget.used == archive_reservation(chunk)
    resp.close()  # the client goes away mid-archive
    await wait_for(lambda: budget.used == 0, "the archive's reservation to be released")
    # The gateway is fine: the next archive is whole.
    resp = await client.get(f"/files/{bucket}/big/?archive=tar")
    assert len(members("tar", await resp.read())) == 4
    await wait_for(lambda: budget.used == 0, "the finished archive's reservation to be released")


# -- recursive delete -----------------------------------------------------------------------
async def test_delete_on_a_folder_without_recursive_is_400(client, tree, s3):
    resp = await client.delete(f"/files/{tree}/photos/")
    assert resp.status == 400
    assert "recursive=1" in (await resp.json())["message"]
    resp = await client.delete(f"/files/{tree}/photos?recursive=1")  # no slash: not a folder
    assert resp.status == 400
    resp = await client.delete(f"/files/{tree}/")
    assert resp.status == 400
    assert sorted(keys_in(s3, tree)) == sorted({**TREE, **OUTSIDE})


async def test_dry_run_counts_then_delete_respects_the_prefix_boundary(client, tree, s3):
    resp = await client.delete(f"/files/{tree}/photos/?recursive=1&dry_run=1")
    assert resp.status == 200
    dry = await resp.json()
    assert dry["dry_run"] is True
    assert dry["would_delete"] == len(TREE)
    assert dry["bytes"] == sum(map(len, TREE.values()))
    assert sorted(keys_in(s3, tree)) == sorted({**TREE, **OUTSIDE})  # nothing gone

    resp = await client.delete(f"/files/{tree}/photos/?recursive=1")
    assert resp.status == 200
    done = await resp.json()
    assert done["deleted"] == dry["would_delete"] and done["bytes"] == dry["bytes"]
    assert sorted(done["keys"]) == sorted(TREE)
    assert done["complete"] is True and done["refused"] == 0 and done["errors"] == 0
    assert sorted(keys_in(s3, tree)) == sorted(OUTSIDE)  # docs/ never touches docs-private/ or docs


async def test_recursive_delete_of_the_bucket_root_keeps_the_bucket(client, tree, s3):
    resp = await client.delete(f"/files/{tree}/?recursive=1")
    assert resp.status == 200
    assert (await resp.json())["deleted"] == len(TREE) + len(OUTSIDE)
    assert keys_in(s3, tree) == []
    s3.head_bucket(Bucket=tree)  # still there


async def test_recursive_delete_goes_in_batches_past_one_page(client, s3, bucket):
    n = 1003
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"many/{i:04d}", Body=b"z")
    s3.put_object(Bucket=bucket, Key="many-not/0", Body=b"z")
    resp = await client.delete(f"/files/{bucket}/many/?recursive=1")
    body = await resp.json()
    assert body["deleted"] == n and body["bytes"] == n
    assert len(body["keys"]) == REPORT_LIMIT and body["lists_truncated"] is True
    assert keys_in(s3, bucket) == ["many-not/0"]


# -- rights --------------------------------------------------------------------------------
def basic(user: str, password: str = "correct horse battery staple") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def auth_client(aiohttp_client, settings, tree):
    app = create_app(settings_mod.replace(settings, auth=True, login_delay=0))
    client = await aiohttp_client(app)
    service = app[keys.AUTH]
    # carol may list photos/ but read and delete only photos/sub dir/.
    await service.add_user("carol", "correct horse battery staple")
    await service.grant("carol", Rule.make(tree, "photos", "list"))
    await service.grant("carol", Rule.make(tree, "photos/sub dir", "read,delete"))
    return client


async def test_archive_holds_only_what_the_caller_may_read(auth_client, tree):
    resp = await auth_client.get(f"/files/{tree}/photos/?archive=zip", headers=basic("carol"))
    assert resp.status == 200
    readable = {k: v for k, v in TREE.items() if k.startswith("photos/sub dir/")}
    assert members("zip", await resp.read()) == relative(readable, "photos/")
    # Anonymous: asked for credentials, no archive.
    resp = await auth_client.get(f"/files/{tree}/photos/?archive=zip")
    assert resp.status == 401 and "WWW-Authenticate" in resp.headers
    # Outside carol's listing rights: refused outright.
    resp = await auth_client.get(f"/files/{tree}/other/?archive=zip", headers=basic("carol"))
    assert resp.status == 403


async def test_recursive_delete_deletes_only_what_the_caller_may_and_names_the_rest(auth_client, tree, s3):
    url = f"/files/{tree}/photos/?recursive=1"
    dry = await (await auth_client.delete(url + "&dry_run=1", headers=basic("carol"))).json()
    mine = sorted(k for k in TREE if k.startswith("photos/sub dir/"))
    others = sorted(k for k in TREE if not k.startswith("photos/sub dir/"))
    assert dry["would_delete"] == len(mine) and dry["refused"] == len(others)

    resp = await auth_client.delete(url, headers=basic("carol"))
    assert resp.status == 200
    body = await resp.json()
    assert body["deleted"] == len(mine) and sorted(body["keys"]) == mine
    assert sorted(body["refused_keys"]) == others and body["complete"] is False
    assert sorted(keys_in(s3, tree)) == sorted(others + list(OUTSIDE))


async def test_recursive_delete_refuses_a_cross_site_browser_request(client, tree, s3):
    resp = await client.delete(
        f"/files/{tree}/photos/?recursive=1", headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    )
    assert resp.status == 403
    assert sorted(keys_in(s3, tree)) == sorted({**TREE, **OUTSIDE})


# -- the next object's GET overlaps the current one ------------------------------------------
class _Tracked:
    """An S3 body that says when it is closed (for counting the GETs an archive holds open)."""

    def __init__(self, body, closed):
        self._body, self._closed, self._done = body, closed, False

    def _close(self):
        if not self._done:
            self._done = True
            self._closed()

    async def __aenter__(self):
        await self._body.__aenter__()
        return self

    async def __aexit__(self, *exc):
        self._close()
        return await self._body.__aexit__(*exc)

    def iter_chunks(self, n):
        return self._body.iter_chunks(n)

    def close(self):
        self._close()
        self._body.close()


@pytest.fixture
def open_gets(client):
    """Wrap the gateway's real storage.get: how many GETs are in flight or hold an open body, now and at most."""
    storage = client.app[keys.STORAGE]
    real_get = storage.get
    count = {"now": 0, "max": 0}

    def closed():
        count["now"] -= 1

    async def get(bucket, key, **kw):
        count["now"] += 1
        count["max"] = max(count["max"], count["now"])
        try:
            download = await real_get(bucket, key, **kw)
        except BaseException:
            count["now"] -= 1
            raise
        download.body = _Tracked(download.body, closed)
        return download

    storage.get = get
    return count


async def test_an_archive_asks_for_the_next_object_while_the_current_one_streams(client, s3, bucket, open_gets):
    objects = {f"many/{i:03d}.txt": f"object {i}\n".encode() * 50 for i in range(30)}
    put_all(s3, bucket, objects)
    for fmt in ("tar", "zip"):
        resp = await client.get(f"/files/{bucket}/many/?archive={fmt}")
        assert members(fmt, await resp.read()) == relative(objects, "many/")  # in order, whole
        await wait_for(lambda: open_gets["now"] == 0, "every S3 body to be closed")
    assert open_gets["max"] == 2  # the current object and the next one: never more


async def test_a_client_that_leaves_mid_archive_leaves_no_body_open(client, s3, bucket, open_gets):
    put_all(s3, bucket, {f"big/{i}.bin": os.urandom(2 * 1024 * 1024) for i in range(4)})
    resp = await client.get(f"/files/{bucket}/big/?archive=tar")
    await resp.content.readexactly(64 * 1024)
    await wait_for(lambda: open_gets["now"] == 2, "the next object's GET to be sent")
    resp.close()
    await wait_for(lambda: open_gets["now"] == 0, "the current and the prefetched body to be closed")
    await wait_for(lambda: client.app[keys.BUDGET].used == 0, "the archive's reservation to be released")
