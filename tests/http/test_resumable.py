"""Resumable uploads (s3gate/http/resumable.py) on the real app against moto: sessions, parts, status,
completion, abort, expiry, and who may touch a session.

moto does not verify Content-MD5 itself, so a wrong checksum refused here was
refused by the gateway (SeaweedFS verifies it too: tests/ui/test_resume.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

import pytest

from s3gate import keys
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from s3gate.errors import BadRequest, PayloadTooLarge
from s3gate.http import resumable
from s3gate.settings import GiB, MiB
from tests.conftest import keys_in, make_settings, open_uploads

PART = 5 * MiB
SIZE = 2 * PART + 1234  # three parts: 5 MiB, 5 MiB, 1234 bytes


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def pieces(data: bytes, part: int = PART) -> dict[int, bytes]:
    return {i + 1: data[off : off + part] for i, off in enumerate(range(0, len(data), part))}


@pytest.fixture
def app_settings(tmp_path, moto_endpoint):
    def make(**overrides):
        values = dict(
            s3_endpoint=moto_endpoint,
            s3_access_key="testing",
            s3_secret_key="testing",
            data_dir=str(tmp_path / "data"),
            part_size=PART,
        )
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
async def gw(aiohttp_client, app_settings):
    return await aiohttp_client(create_app(app_settings()))


async def create(client, bucket, key="big.bin", size=SIZE, headers=None, **extra):
    body = {"bucket": bucket, "key": key, "size": size, "name": key.rsplit("/", 1)[-1], "mtime": 1700000000.5, **extra}
    return await client.post("/api/uploads", json=body, headers=headers or {})


async def put_part(client, sid, n, data, headers=None):
    return await client.put(f"/api/uploads/{sid}/parts/{n}", data=data, headers=headers or {})


async def created(client, bucket, **kwargs):
    resp = await create(client, bucket, **kwargs)
    assert resp.status == 201, await resp.text()
    return await resp.json()


# -- the whole round ----------------------------------------------------------------------
async def test_create_send_out_of_order_status_complete(gw, bucket, s3):
    data = os.urandom(SIZE)
    info = await created(gw, bucket)
    assert (info["part_size"], info["parts"], info["size"]) == (PART, 3, SIZE)
    assert info["grant"].startswith("s3gu_") and info["expires"] and info["name"] == "big.bin"
    sid = info["id"]
    parts = pieces(data)

    resp = await put_part(gw, sid, 3, parts[3], {"Content-MD5": b64(hashlib.md5(parts[3]).digest())})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["md5"] == hashlib.md5(parts[3]).hexdigest()
    sha = hashlib.sha256(parts[1]).digest()
    resp = await put_part(gw, sid, 1, parts[1], {"x-amz-checksum-sha256": b64(sha)})
    assert resp.status == 200, await resp.text()

    status = await (await gw.get(f"/api/uploads/{sid}")).json()
    assert [p["part"] for p in status["done"]] == [1, 3] and status["missing"] == [2]
    assert status["received"] == PART + 1234
    assert status["done"][1]["etag"] == hashlib.md5(parts[3]).hexdigest()  # a curl user can compare with md5sum

    assert (await put_part(gw, sid, 2, parts[2])).status == 200  # no checksum: still verified by S3 (Content-MD5)
    resp = await gw.post(f"/api/uploads/{sid}/complete")
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["size"] == SIZE
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data
    assert (await gw.get(f"/api/uploads/{sid}")).status == 404  # the session is gone with it
    assert open_uploads(s3, bucket) == []


async def test_sending_a_part_again_replaces_it(gw, bucket, s3):
    data = os.urandom(SIZE)
    parts = pieces(data)
    sid = (await created(gw, bucket))["id"]
    assert (await put_part(gw, sid, 2, os.urandom(PART))).status == 200  # wrong bytes first
    for n, piece in parts.items():
        assert (await put_part(gw, sid, n, piece)).status == 200
    assert (await gw.post(f"/api/uploads/{sid}/complete")).status == 201
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data


async def test_wrong_checksum_refused_and_part_not_stored(gw, bucket):
    piece = os.urandom(PART)
    sid = (await created(gw, bucket))["id"]
    resp = await put_part(gw, sid, 1, piece, {"Content-MD5": b64(hashlib.md5(b"other").digest())})
    assert resp.status == 400 and (await resp.json())["error"] == "checksum_mismatch"
    resp = await put_part(gw, sid, 1, piece, {"x-amz-checksum-sha256": b64(hashlib.sha256(b"other").digest())})
    assert resp.status == 400 and (await resp.json())["error"] == "checksum_mismatch"
    resp = await put_part(gw, sid, 1, piece, {"Content-MD5": "not base64!"})
    assert resp.status == 400
    status = await (await gw.get(f"/api/uploads/{sid}")).json()
    assert status["done"] == [] and status["missing"] == [1, 2, 3]


@pytest.mark.parametrize(
    "number,body,why",
    [
        ("0", b"x" * 1234, "part number"),
        ("4", b"x" * 1234, "part number"),
        ("x", b"x" * 1234, "part number"),
        ("-1", b"x" * 1234, "part number"),
        ("3", b"x" * 1233, "exactly 1234 bytes"),  # the last part is the rest, exactly
        ("1", b"x" * 1234, f"exactly {PART} bytes"),
    ],
)
async def test_bad_part_number_or_size_is_400(gw, bucket, number, body, why):
    sid = (await created(gw, bucket))["id"]
    resp = await put_part(gw, sid, number, body)
    assert resp.status == 400, await resp.text()
    assert why in (await resp.json())["message"]


async def test_chunked_part_refused(gw, bucket):
    sid = (await created(gw, bucket))["id"]

    async def gen():
        yield b"x" * 1234

    resp = await put_part(gw, sid, 3, gen())
    assert resp.status == 400 and "Content-Length" in (await resp.json())["message"]


async def test_complete_with_parts_missing_is_409(gw, bucket, s3):
    data = os.urandom(SIZE)
    sid = (await created(gw, bucket))["id"]
    assert (await put_part(gw, sid, 2, pieces(data)[2])).status == 200
    resp = await gw.post(f"/api/uploads/{sid}/complete")
    assert resp.status == 409
    assert "2 of 3 parts are missing: 1, 3" in (await resp.json())["message"]
    assert keys_in(s3, bucket) == []


async def test_create_refusals(gw, bucket, s3):
    # Too many parts for the size asked, parts too small or too large, nothing to send, no such bucket.
    resp = await create(gw, bucket, size=10_000 * PART + 1, part_size=PART)
    assert resp.status == 400 and "at most 10000" in (await resp.json())["message"]
    resp = await create(gw, bucket, part_size=PART - 1)
    assert resp.status == 400 and "part_size must be between" in (await resp.json())["message"]
    resp = await create(gw, bucket, part_size=65 * MiB)
    assert resp.status == 400
    assert (await create(gw, bucket, size=0)).status == 400
    assert (await create(gw, bucket, size="12")).status == 400
    assert (await create(gw, "no-such-bucket-here")).status == 404
    resp = await gw.post("/api/uploads", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    # Don't overwrite: refused before a byte is sent.
    s3.put_object(Bucket=bucket, Key="big.bin", Body=b"old")
    resp = await create(gw, bucket, headers={"If-None-Match": "*"})
    assert resp.status == 412
    assert open_uploads(s3, bucket) == []


async def test_over_the_upload_limit_is_413(aiohttp_client, app_settings, bucket):
    client = await aiohttp_client(create_app(app_settings(max_upload_bytes=SIZE - 1)))
    assert (await create(client, bucket)).status == 413


def test_part_size_chosen_within_limits():
    budget = 256 * MiB
    assert resumable.choose_part_size(SIZE, 8 * MiB, budget) == 8 * MiB
    big = 500 * GiB
    part = resumable.choose_part_size(big, 8 * MiB, budget)
    assert part % MiB == 0 and 5 * MiB <= part <= 64 * MiB and -(-big // part) <= 10_000
    with pytest.raises(PayloadTooLarge):
        resumable.choose_part_size(10_000 * 64 * MiB + 1, 8 * MiB, budget)
    with pytest.raises(PayloadTooLarge):  # a part must fit in the memory budget
        resumable.choose_part_size(10_000 * 16 * MiB, 8 * MiB, 8 * MiB)
    with pytest.raises(BadRequest):
        resumable.choose_part_size(SIZE, 8 * MiB, budget, asked=4 * MiB)


async def test_no_overwrite_checked_again_at_completion(gw, bucket, s3):
    data = os.urandom(SIZE)
    sid = (await created(gw, bucket, headers={"If-None-Match": "*"}))["id"]
    for n, piece in pieces(data).items():
        assert (await put_part(gw, sid, n, piece)).status == 200
    s3.put_object(Bucket=bucket, Key="big.bin", Body=b"someone else's")  # meanwhile
    resp = await gw.post(f"/api/uploads/{sid}/complete", headers={"If-None-Match": "*"})
    assert resp.status == 412
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == b"someone else's"
    # The session stays: the user may still choose to overwrite.
    resp = await gw.post(f"/api/uploads/{sid}/complete")
    assert resp.status == 201
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data


async def test_abort_deletes_the_parts(gw, bucket, s3):
    sid = (await created(gw, bucket))["id"]
    assert (await put_part(gw, sid, 1, os.urandom(PART))).status == 200
    assert len(open_uploads(s3, bucket)) == 1
    resp = await gw.delete(f"/api/uploads/{sid}")
    assert resp.status == 200
    assert open_uploads(s3, bucket) == []
    assert (await gw.get(f"/api/uploads/{sid}")).status == 404
    assert (await put_part(gw, sid, 1, os.urandom(PART))).status == 404


async def test_mine_lists_unfinished_sessions(gw, bucket):
    first = await created(gw, bucket, key="a/one.bin")
    second = await created(gw, bucket, key="b/two.bin", size=PART)
    listed = (await (await gw.get("/api/uploads")).json())["uploads"]
    assert [(u["id"], u["name"], u["size"], u["mtime"]) for u in listed] == [
        (first["id"], "one.bin", SIZE, 1700000000.5),
        (second["id"], "two.bin", PART, 1700000000.5),
    ]
    assert listed[0]["grant"] == first["grant"]


async def test_expired_session_swept_and_its_upload_aborted(gw, bucket, s3):
    info = await created(gw, bucket)
    sid = info["id"]
    assert (await put_part(gw, sid, 1, os.urandom(PART))).status == 200
    app = gw.app
    session = await app[keys.UPLOAD_SESSIONS].get_upload_session(sid)
    assert session is not None
    assert await resumable.sweep_expired(app, now=session.expires_at - 1) == 0  # not yet
    assert len(open_uploads(s3, bucket)) == 1
    assert await resumable.sweep_expired(app, now=session.expires_at) == 1
    assert open_uploads(s3, bucket) == []
    assert await app[keys.UPLOAD_SESSIONS].get_upload_session(sid) is None


async def test_sweepers_at_once_abort_an_expired_session_once(gw, bucket, s3, caplog):
    """Every worker of every instance sweeps: the one that deletes the row aborts the upload."""
    app = gw.app
    ids = [(await created(gw, bucket, key=f"k{n}.bin"))["id"] for n in range(4)]
    later = max([(await app[keys.UPLOAD_SESSIONS].get_upload_session(i)).expires_at for i in ids])
    counts = await asyncio.gather(*(resumable.sweep_expired(app, now=later) for _ in range(3)))
    assert sum(counts) == 4
    assert open_uploads(s3, bucket) == []


async def test_expiry_setting(aiohttp_client, app_settings, bucket):
    client = await aiohttp_client(create_app(app_settings(upload_session_hours=2)))
    sid = (await created(client, bucket))["id"]
    s = await client.app[keys.UPLOAD_SESSIONS].get_upload_session(sid)
    assert s.expires_at - s.created_at == 2 * 3600


async def test_cross_site_refused(gw, bucket, s3):
    foreign = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    assert (await create(gw, bucket, headers=foreign)).status == 403
    sid = (await created(gw, bucket))["id"]
    assert (await put_part(gw, sid, 3, b"x" * 1234, foreign)).status == 403
    assert (await gw.post(f"/api/uploads/{sid}/complete", headers=foreign)).status == 403
    assert (await gw.delete(f"/api/uploads/{sid}", headers=foreign)).status == 403
    assert len(open_uploads(s3, bucket)) == 1


async def test_sessions_survive_a_restart(aiohttp_client, app_settings, bucket, s3):
    """Kept in the database (here: auth off, the store opened for sessions alone), not in the worker."""
    data = os.urandom(SIZE)
    first = await aiohttp_client(create_app(app_settings()))
    sid = (await created(first, bucket))["id"]
    assert (await put_part(first, sid, 1, pieces(data)[1])).status == 200
    await first.close()
    second = await aiohttp_client(create_app(app_settings()))
    status = await (await second.get(f"/api/uploads/{sid}")).json()
    assert status["missing"] == [2, 3]
    for n in (2, 3):
        assert (await put_part(second, sid, n, pieces(data)[n])).status == 200
    assert (await second.post(f"/api/uploads/{sid}/complete")).status == 201
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data


# -- with users ----------------------------------------------------------------------------
@pytest.fixture
async def users(aiohttp_client, app_settings, bucket):
    """auth on: alice and bob may write the bucket; root is an admin. Bearer tokens for each."""
    client = await aiohttp_client(create_app(app_settings(auth=True, login_delay=0)))
    service = client.app[keys.AUTH]
    tokens = {}
    for name in ("alice", "bob", "root"):
        await service.add_user(name, None, admin=name == "root")
        if name != "root":
            await service.grant(name, Rule.parse(f"{bucket}:read,list,write"))
        tokens[name] = {"Authorization": f"Bearer {(await service.create_token(name))[0]}"}
    return client, service, tokens


async def test_only_the_owner_or_an_admin_touches_a_session(users, bucket, s3):
    client, _, tokens = users
    data = os.urandom(SIZE)
    parts = pieces(data)
    info = await created(client, bucket, headers=tokens["alice"])
    sid = info["id"]
    bob = tokens["bob"]
    assert (await client.get(f"/api/uploads/{sid}", headers=bob)).status == 404
    assert (await put_part(client, sid, 3, parts[3], bob)).status == 404
    assert (await client.post(f"/api/uploads/{sid}/complete", headers=bob)).status == 404
    assert (await client.delete(f"/api/uploads/{sid}", headers=bob)).status == 404
    assert (await (await client.get("/api/uploads", headers=bob)).json())["uploads"] == []
    assert (await client.get("/api/uploads")).status == 401  # anonymous: nobody's list
    assert (await client.get(f"/api/uploads/{sid}")).status == 401
    bad_grant = {resumable.GRANT_HEADER: info["grant"][:-2] + "xx"}
    assert (await put_part(client, sid, 3, parts[3], bad_grant)).status == 404

    assert (await put_part(client, sid, 1, parts[1], tokens["alice"])).status == 200
    assert (await put_part(client, sid, 2, parts[2], tokens["root"])).status == 200  # an admin may
    assert (await put_part(client, sid, 3, parts[3], tokens["alice"])).status == 200
    resp = await client.post(f"/api/uploads/{sid}/complete", headers=tokens["alice"])
    assert resp.status == 201
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data


async def test_grant_outlives_the_login_but_not_the_right(users, bucket, s3):
    """The session-scoped grant: a login cookie that ends midway does not stop the upload; losing write does."""
    client, service, tokens = users
    data = os.urandom(SIZE)
    parts = pieces(data)
    alice = await service.store.get_user("alice")
    cookie_id, _ = await service.start_session(await service.principal_for(alice, "session"), "127.0.0.1")
    cookie = {"Cookie": f"s3gate_session={cookie_id}", "Sec-Fetch-Site": "same-origin"}
    info = await created(client, bucket, headers=cookie)
    sid, grant = info["id"], {resumable.GRANT_HEADER: info["grant"], "Sec-Fetch-Site": "same-origin"}
    assert (await put_part(client, sid, 1, parts[1], cookie)).status == 200

    await service.end_session(cookie_id)  # the login expired (or she signed out elsewhere)
    assert (await put_part(client, sid, 2, parts[2], cookie)).status == 401
    stale_cookie_and_grant = {**cookie, **grant}
    assert (await put_part(client, sid, 2, parts[2], stale_cookie_and_grant)).status == 200
    status = await (await client.get(f"/api/uploads/{sid}", headers=grant)).json()
    assert status["missing"] == [3]

    await service.revoke("alice", Rule.parse(f"{bucket}:write"))  # no longer allowed to write there
    resp = await put_part(client, sid, 3, parts[3], grant)
    assert resp.status == 403 and "may no longer write" in (await resp.json())["message"]
    assert (await client.post(f"/api/uploads/{sid}/complete", headers=grant)).status == 403
    await service.grant("alice", Rule.parse(f"{bucket}:write"))
    assert (await put_part(client, sid, 3, parts[3], grant)).status == 200
    assert (await client.post(f"/api/uploads/{sid}/complete", headers=grant)).status == 201
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data

    # A disabled owner's grant is dead.
    sid2 = (await created(client, bucket, key="two.bin", headers=tokens["alice"]))["id"]
    grant2 = {resumable.GRANT_HEADER: resumable.grant_for(_request_like(client), sid2)}
    await service.set_disabled("alice", True)
    assert (await client.get(f"/api/uploads/{sid2}", headers=grant2)).status == 404


def _request_like(client):
    class R:
        app = client.app

    return R()


async def test_create_needs_write(users, bucket, s3):
    client, service, tokens = users
    await service.revoke("bob", Rule.parse(f"{bucket}:write"))
    assert (await create(client, bucket, headers=tokens["bob"])).status == 403
    assert (await create(client, bucket)).status == 401
    await asyncio.sleep(0)
    assert open_uploads(s3, bucket) == []


async def test_parts_listed_across_pages(gw, bucket, monkeypatch):
    """ListParts answers 1,000 parts a page: a status past the first page still sees every part."""
    from s3gate.storage import multipart

    monkeypatch.setattr(multipart, "LIST_PAGE", 1)
    data = os.urandom(SIZE)
    sid = (await created(gw, bucket))["id"]
    for n, piece in pieces(data).items():
        assert (await put_part(gw, sid, n, piece)).status == 200
    status = await (await gw.get(f"/api/uploads/{sid}")).json()
    assert [p["part"] for p in status["done"]] == [1, 2, 3] and status["missing"] == []
    assert (await gw.post(f"/api/uploads/{sid}/complete")).status == 201
