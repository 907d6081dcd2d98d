"""Folders in against moto: PUT/POST ?extract=tar turns a tar stream (plain, gzip, bzip2, xz) into objects."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import tarfile

import pytest

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from s3gate.errors import InvalidKey
from s3gate.storage import untar
from tests.conftest import keys_in, make_settings, open_uploads

MiB = 1024 * 1024
PASSWORD = "correct horse battery"

TREE = {
    "photos/a.txt": b"hello\n" * 5000,
    "photos/sub dir/été/ünï cödé.txt": b"nested, unicode\n" * 100,
    "photos/deep/" + "x" * 120 + "/long.bin": os.urandom(5000),  # a PAX long name
    "photos/empty": b"",
}


def make_tar(members: list[tuple[str, bytes | str | None]], mode: str = "w", fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar built by the standard library: bytes = a file, None = a directory, 'link:T' / 'hard:T' / 'fifo'."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode, format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if "\x00" in name:  # the ustar field would cut it: only a PAX record carries it whole
                info.pax_headers = {"path": name}
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, str):
                kind, _, target = data.partition(":")
                info.type = {"link": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = target
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def tree_tar(mode: str = "w") -> bytes:
    members: list[tuple[str, bytes | str | None]] = [("photos", None), ("photos/sub dir", None)]
    members += list(TREE.items())
    return make_tar(members, mode)


def stored(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys_in(s3, bucket) if k.startswith(prefix)}


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
async def test_tar_streams_become_objects(client, bucket, s3, mode):
    resp = await client.put(f"/files/{bucket}/backup/?extract=tar", data=tree_tar(mode))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    want = {"backup/" + k: v for k, v in TREE.items()}
    assert stored(s3, bucket) == want
    assert body["complete"] is True and body["errors"] == []
    assert {f["key"]: (f["size"], f["sha256"]) for f in body["stored"]} == {
        k: (len(v), hashlib.sha256(v).hexdigest()) for k, v in want.items()
    }
    assert body["stored_count"] == len(want) and body["bytes"] == sum(map(len, want.values()))
    assert [s["name"] for s in body["skipped"]] == ["photos", "photos/sub dir"]
    assert all(s["reason"].startswith("directory") for s in body["skipped"])


async def test_post_raw_body_and_bucket_root_and_dot_slash_names(client, bucket, s3):
    # `tar c .` writes ./a.txt; a POST with a raw body works like the PUT; the bucket root is a prefix too.
    data = make_tar([("./a.txt", b"A"), ("./d/b.txt", b"B")], "w:gz")
    resp = await client.post(f"/files/{bucket}/?extract=tar", data=data)
    assert resp.status == 201, await resp.text()
    resp = await client.post(f"/files/{bucket}/in/?extract=tar", data=data)
    assert resp.status == 201, await resp.text()
    assert stored(s3, bucket) == {"a.txt": b"A", "d/b.txt": b"B", "in/a.txt": b"A", "in/d/b.txt": b"B"}


async def test_bad_members_are_refused_and_reported_while_good_ones_land(client, bucket, s3):
    members: list[tuple[str, bytes | str | None]] = [
        ("good/one.txt", b"1"),
        ("../escape.txt", b"evil"),
        ("good/../../escape2.txt", b"evil"),
        ("/etc/passwd", b"evil"),
        ("link", "link:/etc/passwd"),
        ("hard", "hard:good/one.txt"),
        ("fifo", "fifo"),
        ("nul\x00name", b"evil"),  # only PAX can carry a NUL in a name
        ("k" * 1100, b"too long"),
        ("good/two.txt", b"2"),
    ]
    resp = await client.put(f"/files/{bucket}/in/?extract=tar", data=make_tar(members))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert stored(s3, bucket) == {"in/good/one.txt": b"1", "in/good/two.txt": b"2"}
    reasons = {s["name"]: s["reason"] for s in body["skipped"]}
    assert reasons["../escape.txt"] == reasons["good/../../escape2.txt"] == "'..' in the path"
    assert reasons["/etc/passwd"] == "absolute path"
    assert reasons["link"] == "symbolic link" and reasons["hard"] == "hard link" and reasons["fifo"] == "FIFO"
    assert reasons["nul\x00name"] == "NUL in the name"
    assert "1024" in reasons["k" * 1100]
    assert body["skipped_count"] == 8


async def test_a_large_member_goes_multipart_within_the_budget(aiohttp_client, settings, bucket, s3):
    app = create_app(settings_mod.replace(settings, part_size=5 * MiB, upload_memory_budget=24 * MiB))
    client = await aiohttp_client(app)
    big = os.urandom(12 * MiB + 3)
    data = make_tar([("small.txt", b"s"), ("big.bin", big)], "w:gz")

    async def chunks():  # chunked, length unknown: as `tar c | curl -T -` sends it
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    resp = await client.put(f"/files/{bucket}/x/?extract=tar", data=chunks())
    assert resp.status == 201, await resp.text()
    head = s3.head_object(Bucket=bucket, Key="x/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 2 MiB parts
    assert s3.get_object(Bucket=bucket, Key="x/big.bin")["Body"].read() == big
    budget = app[keys.BUDGET]
    assert budget.peak <= budget.total and budget.used == 0


@pytest.mark.parametrize("cut", ["in-big-member", "in-gzip-trailer"])
async def test_a_truncated_stream_names_what_was_stored_and_leaves_nothing_partial(client, bucket, s3, cut):
    big = os.urandom(9 * MiB)  # more than one 8 MiB part: the member in flight is a multipart upload
    data = make_tar([("first.txt", b"first"), ("second.txt", b"second"), ("big.bin", big), ("last.txt", b"x")], "w:gz")
    data = data[: len(data) // 2] if cut == "in-big-member" else data[:-4]
    resp = await client.put(f"/files/{bucket}/t/?extract=tar", data=data)
    body = await resp.json()
    if cut == "in-gzip-trailer":
        # Every member was whole; the damage is in the gzip trailer: still refused, all named.
        assert resp.status == 400 and body["complete"] is False
        assert [f["key"] for f in body["stored"]] == ["t/first.txt", "t/second.txt", "t/big.bin", "t/last.txt"]
        return
    assert resp.status == 400, body
    assert body["complete"] is False
    assert [f["key"] for f in body["stored"]] == ["t/first.txt", "t/second.txt"]
    assert body["errors"][0]["name"] == "big.bin"
    assert "truncated" in body["errors"][0]["message"]
    assert sorted(keys_in(s3, bucket)) == ["t/first.txt", "t/second.txt"]
    assert open_uploads(s3, bucket) == []


async def test_not_a_tar_and_unknown_format(client, bucket, s3):
    resp = await client.put(f"/files/{bucket}/t/?extract=tar", data=b"hello, not a tar" * 100)
    assert resp.status == 400 and "not a tar stream" in (await resp.json())["error"]["message"]
    resp = await client.put(f"/files/{bucket}/t/?extract=zip", data=b"")
    assert resp.status == 400
    resp = await client.put(f"/files/{bucket}/?extract=tar", data=make_tar([]))
    assert resp.status == 201 and (await resp.json())["stored"] == []
    resp = await client.put(f"/files/{bucket}/", data=b"x")  # a PUT to the bucket itself, without extract
    assert resp.status == 400
    assert keys_in(s3, bucket) == []


async def test_member_count_and_total_size_limits(aiohttp_client, settings, bucket, s3):
    limited = settings_mod.replace(settings, max_archive_members=3, max_upload_bytes=100)
    client = await aiohttp_client(create_app(limited))
    members: list[tuple[str, bytes | str | None]] = [("d", None), ("a", b"1"), ("b", b"2"), ("c", b"3")]
    resp = await client.put(f"/files/{bucket}/n/?extract=tar", data=make_tar(members))
    body = await resp.json()
    assert resp.status == 413 and "max_archive_members" in body["error"]["message"]
    assert [f["key"] for f in body["stored"]] == ["n/a", "n/b"]
    resp = await client.put(f"/files/{bucket}/s/?extract=tar", data=make_tar([("a", b"x" * 60), ("b", b"y" * 60)]))
    body = await resp.json()
    assert resp.status == 413 and [f["key"] for f in body["stored"]] == ["s/a"]
    assert sorted(keys_in(s3, bucket)) == ["n/a", "n/b", "s/a"]


def test_member_key_policy():
    assert untar.member_key("p/", "./a//b/./c") == "p/a/b/c"
    for name in ("..", "a/../b", "/abs", "", ".", "./", "a\x00b"):
        with pytest.raises(InvalidKey):
            untar.member_key("p/", name)


# -- rights ------------------------------------------------------------------------------
@pytest.fixture
async def auth_client(aiohttp_server, aiohttp_client, tmp_path, moto_endpoint, bucket):
    settings = make_settings(
        auth=True, login_delay=0, s3_endpoint=moto_endpoint, s3_access_key="testing", s3_secret_key="testing",
        data_dir=str(tmp_path / "data"),
    )  # fmt: skip
    app = create_app(settings)
    server = await aiohttp_server(app, host="127.0.0.1", port=0)
    await app[keys.AUTH].add_user("alice", PASSWORD)
    await app[keys.AUTH].grant("alice", Rule.parse(f"{bucket}/docs:read,list,write"))
    return server


def _basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()


async def _expect_continue(port: int, path: str, user: str | None) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Transfer-Encoding: chunked", "Expect: 100-continue"]
        if user:
            head.append(f"Authorization: {_basic(user)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()


async def test_write_rights_are_checked_before_the_body(auth_client, bucket, s3):
    port = auth_client.port
    # Refused: the answer comes first, never 100 Continue (RFC 9110 §10.1.1).
    assert (await _expect_continue(port, f"/files/{bucket}/other/?extract=tar", "alice")).startswith(b"HTTP/1.1 403")
    assert (await _expect_continue(port, f"/files/{bucket}/docs/?extract=tar", None)).startswith(b"HTTP/1.1 401")
    # Allowed: 100 Continue, then the body.
    assert (await _expect_continue(port, f"/files/{bucket}/docs/?extract=tar", "alice")).startswith(b"HTTP/1.1 100")
    assert keys_in(s3, bucket) == []


async def test_a_plain_tar_cut_at_a_member_boundary_is_not_taken_for_whole(client, bucket, s3):
    # tarfile alone ends such a stream quietly, as if it were the whole archive.
    data = make_tar([("a.txt", b"a"), ("b.txt", b"b"), ("c.txt", b"c")], fmt=tarfile.GNU_FORMAT)
    resp = await client.put(f"/files/{bucket}/cut/?extract=tar", data=data[: 2 * 1024])  # header + block, twice
    body = await resp.json()
    assert resp.status == 400 and body["complete"] is False
    assert "no end-of-archive block" in body["error"]["message"]
    assert [f["key"] for f in body["stored"]] == ["cut/a.txt", "cut/b.txt"]


async def test_the_target_is_a_folder(client, bucket, s3):
    data = make_tar([("a.txt", b"A")])
    # `curl -T backup.tar URL/in/?extract=tar` appends the file name: it names no folder.
    for path in ("in/backup.tar", "in/backup.tar.gz", "in/b.TGZ", "in/x.tar.xz"):
        resp = await client.put(f"/files/{bucket}/{path}?extract=tar", data=data)
        assert resp.status == 201, path
    resp = await client.put(f"/files/{bucket}/in/photos?extract=tar", data=data)  # a folder without its '/'
    assert resp.status == 400 and "ending in '/'" in (await resp.json())["message"]
    assert keys_in(s3, bucket) == ["in/a.txt"]


# -- decompression: memory and trailers (see also tests/storage/test_untar.py) ---------------
async def test_an_xz_stream_with_a_huge_dictionary_is_refused_with_a_clear_answer(client, bucket, s3):
    import subprocess

    data = make_tar([("a.txt", b"A"), ("b.txt", b"B")])
    xz = subprocess.run(["xz", "-c", "--lzma2=dict=1536MiB"], input=data, capture_output=True, check=True).stdout
    resp = await client.put(f"/files/{bucket}/t/?extract=tar", data=xz)
    body = await resp.json()
    assert resp.status == 413, body
    assert "xz dictionary too large" in body["error"]["message"]
    assert body["complete"] is False and body["stored"] == []
    assert keys_in(s3, bucket) == []


async def test_a_gzip_stream_whose_crc_does_not_match_is_an_error_in_the_summary(client, bucket, s3):
    # Larger than one read, so the members go up before the trailer is reached.
    data = bytearray(make_tar([("a.bin", os.urandom(200_000)), ("b.bin", os.urandom(200_000))], "w:gz"))
    data[-8] ^= 0x01  # the CRC-32 of the trailer (RFC 1952 §2.3.1): the bytes inflate fine, they are not the ones sent
    resp = await client.put(f"/files/{bucket}/t/?extract=tar", data=bytes(data))
    body = await resp.json()
    assert resp.status == 400, body
    assert body["complete"] is False and "incorrect data check" in body["error"]["message"]
    # Already stored before the trailer could be read: named, never passed off as a whole archive.
    assert [f["key"] for f in body["stored"]] == ["t/a.bin", "t/b.bin"]
