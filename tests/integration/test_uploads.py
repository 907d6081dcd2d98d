"""Uploads with real curl into SeaweedFS: many parts, chunked bodies, forms, odd names."""

from __future__ import annotations

import json
import shlex
from urllib.parse import quote

import pytest

from tests.integration.helpers import PART, KiB, MiB, curl, random_bytes, run, sha256, sha256_file

pytestmark = pytest.mark.integration


async def test_curl_T_of_many_parts_into_a_folder(gateway, bucket, store, tmp_path):
    path = tmp_path / "disk image.iso"
    size = 3 * PART + PART // 2  # four parts, the last one short
    path.write_bytes(random_bytes(size))
    local = sha256_file(path)

    # curl appends the local file name when the URL ends in '/'.
    got = await curl("-v", "-T", path, gateway.url(f"/files/{bucket}/isos/"), tmp=tmp_path)
    assert got.status == 201, got.text
    # curl sent Expect: 100-continue and the gateway said yes before the body.
    assert "> Expect: 100-continue" in got.err
    assert [b.split("\n")[0].strip() for b in got.all_header_blocks] == [
        "HTTP/1.1 100 Continue",
        "HTTP/1.1 201 Created",
    ]
    info = got.json()
    assert info["key"] == "isos/disk image.iso"
    assert info["size"] == size
    assert info["sha256"] == local  # what `sha256sum` prints
    assert got.headers["x-checksum-sha256"] == local
    assert got.headers["location"] == f"/files/{bucket}/isos/disk%20image.iso"  # percent-encoded (item 15)

    head = await store.head(bucket, "isos/disk image.iso")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-4")  # a real four-part multipart upload
    assert info["etag"] == head["ETag"].strip('"')
    assert sha256(await store.get(bucket, "isos/disk image.iso")) == local
    assert await store.open_uploads(bucket) == []


async def test_small_body_is_one_put(gateway, bucket, store, tmp_path):
    path = tmp_path / "small.txt"
    path.write_bytes(b"tiny\n" * 100)
    got = await curl("-T", path, gateway.url(f"/files/{bucket}/small.txt"), tmp=tmp_path)
    assert got.status == 201
    head = await store.head(bucket, "small.txt")
    assert "-" not in head["ETag"]  # a single PutObject, no multipart
    assert head["ContentType"] == "text/plain"
    assert await store.get(bucket, "small.txt") == b"tiny\n" * 100


async def test_piped_body_of_unknown_length_goes_chunked(gateway, bucket, store, tmp_path):
    path = tmp_path / "dump.sql"
    size = 2 * PART + 123_457
    path.write_bytes(random_bytes(size))
    url = gateway.url(f"/files/{bucket}/backups/dump.sql")

    # As a user types it: the size is unknown to curl, so it sends chunked.
    got = await run("sh", "-c", f"cat {shlex.quote(str(path))} | curl -sS -v -T - {shlex.quote(url)}")
    assert got.rc == 0, got.errtext
    assert "> Transfer-Encoding: chunked" in got.errtext
    assert "Content-Length" not in got.errtext.split("< HTTP/1.1")[0]  # request carried no length
    info = json.loads(got.out)
    assert info["size"] == size and info["sha256"] == sha256_file(path)
    assert sha256(await store.get(bucket, "backups/dump.sql")) == sha256_file(path)
    assert (await store.head(bucket, "backups/dump.sql"))["ETag"].strip('"').endswith("-3")
    assert await store.open_uploads(bucket) == []


async def test_form_with_several_files_keeps_nested_paths(gateway, bucket, store, tmp_path):
    a, b, c = tmp_path / "a.bin", tmp_path / "b.txt", tmp_path / "c.txt"
    a.write_bytes(random_bytes(PART + 300 * KiB))  # a multipart upload inside the form
    b.write_bytes(b"bee\n" * 1000)
    c.write_bytes(b"sea\n")

    got = await curl(
        "-F", f"file=@{a}",
        "-F", f"file=@{b}",
        "-F", f"file=@{c};filename=dir/sub/c.txt",
        "-F", "comment=not a file",  # a plain form field is ignored
        gateway.url(f"/files/{bucket}/inbox/"),
        tmp=tmp_path,
    )  # fmt: skip
    assert got.status == 201, got.text
    uploaded = got.json()["uploaded"]
    assert [u["key"] for u in uploaded] == ["inbox/a.bin", "inbox/b.txt", "inbox/dir/sub/c.txt"]
    for u, path in zip(uploaded, (a, b, c)):
        assert u["size"] == path.stat().st_size
        assert u["sha256"] == sha256_file(path)
        assert sha256(await store.get(bucket, u["key"])) == sha256_file(path)
    assert sorted(await store.keys(bucket)) == ["inbox/a.bin", "inbox/b.txt", "inbox/dir/sub/c.txt"]
    assert await store.open_uploads(bucket) == []


@pytest.mark.parametrize(
    ("filename", "key"),
    [
        ("../../etc/passwd", "inbox/etc/passwd"),
        ("/etc/shadow", "inbox/etc/shadow"),
        ("a/../../../b.txt", "inbox/a/b.txt"),
        ("./././dot.txt", "inbox/dot.txt"),
        ("..//..//x/./y.txt", "inbox/x/y.txt"),
    ],
)
async def test_form_filenames_cannot_escape_the_prefix(gateway, bucket, store, tmp_path, filename, key):
    src = tmp_path / "payload"
    src.write_bytes(b"payload\n")
    got = await curl("-F", f"file=@{src};filename={filename}", gateway.url(f"/files/{bucket}/inbox/"), tmp=tmp_path)
    assert got.status == 201, got.text
    assert [u["key"] for u in got.json()["uploaded"]] == [key]
    assert await store.keys(bucket) == [key]


async def test_windows_style_names_stay_under_the_prefix(gateway, bucket, store, tmp_path):
    src = tmp_path / "payload"
    src.write_bytes(b"payload\n")
    names = ("..\\..\\windows\\win.ini", "C:\\Users\\me\\x.txt", "\\\\server\\share\\y.txt")
    args = [a for n in names for a in ("-F", f"file=@{src};filename={n}")]
    got = await curl(*args, gateway.url(f"/files/{bucket}/inbox/"), tmp=tmp_path)
    assert got.status == 201, got.text
    expected = ["inbox/windows/win.ini", "inbox/Users/me/x.txt", "inbox/server/share/y.txt"]
    assert [u["key"] for u in got.json()["uploaded"]] == expected
    assert sorted(await store.keys(bucket)) == sorted(expected)  # all three, and nothing else


async def test_windows_style_relative_path_is_kept_as_folders(gateway, bucket, store, tmp_path):
    # curl (and old browsers) send backslashes raw in the quoted filename, as
    # the WHATWG form encoding says (only '"', CR and LF are escaped);
    # safe_join promises to turn 'dir\\sub\\c.txt' into folders.
    src = tmp_path / "payload"
    src.write_bytes(b"payload\n")
    got = await curl(
        "-F", f"file=@{src};filename=dir\\sub\\c.txt",
        "-F", f"file=@{src};filename=C:\\Users\\me\\x.txt",
        gateway.url(f"/files/{bucket}/inbox/"),
        tmp=tmp_path,
    )  # fmt: skip
    assert got.status == 201, got.text
    assert [u["key"] for u in got.json()["uploaded"]] == ["inbox/dir/sub/c.txt", "inbox/Users/me/x.txt"]


async def test_dot_segments_in_a_put_url_are_refused(gateway, bucket, store, tmp_path):
    src = tmp_path / "x"
    src.write_bytes(b"x")
    for path in (f"/files/{bucket}/inbox/../escape.txt", f"/files/{bucket}/./here.txt"):
        got = await curl("--path-as-is", "-T", src, gateway.url(path), tmp=tmp_path)
        assert got.status == 400, (path, got.text)
        assert got.json()["error"] == "invalid_key"
    assert await store.keys(bucket) == []


async def test_odd_keys_round_trip_through_curl_and_wget(gateway, bucket, store, tmp_path):
    key = "dir with space/naïve 100%+1 #tag? ü.txt"
    data = random_bytes(40 * KiB)
    src = tmp_path / "src"
    src.write_bytes(data)
    url = gateway.url(f"/files/{bucket}/{quote(key)}")

    up = await curl("-T", src, url, tmp=tmp_path)
    assert up.status == 201, up.text
    assert up.json()["key"] == key
    assert await store.keys(bucket) == [key]

    down = await curl(url, tmp=tmp_path)
    assert down.status == 200 and sha256(down.body) == sha256(data)
    assert down.headers["content-disposition"].endswith(
        "filename*=UTF-8''" + quote("naïve 100%+1 #tag? ü.txt", safe="")
    )

    listing = await curl(gateway.url(f"/files/{bucket}/{quote('dir with space/')}"), tmp=tmp_path)
    assert [o["key"] for o in listing.json()["objects"]] == [key]

    out = tmp_path / "wget-out"
    got = await run("wget", "-q", "-O", out, url)
    assert got.rc == 0, got.errtext
    assert sha256_file(out) == sha256(data)


async def test_put_to_a_missing_bucket_is_404(gateway, store, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(random_bytes(2 * MiB))
    got = await curl("-T", src, gateway.url("/files/no-such-bucket-here/f"), tmp=tmp_path)
    assert got.status == 404
    assert got.json()["error"] == "no_such_bucket"


async def test_delete_via_the_files_route(gateway, bucket, store, tmp_path):
    await store.put(bucket, "old/a.txt", b"a")
    await store.put(bucket, "old/b.txt", b"b")
    got = await curl("-X", "DELETE", gateway.url(f"/files/{bucket}/old/a.txt"), tmp=tmp_path)
    assert got.status == 200, got.text
    assert got.json() == {"deleted": "old/a.txt", "bucket": bucket}
    assert await store.keys(bucket) == ["old/b.txt"]

    again = await curl("-X", "DELETE", gateway.url(f"/files/{bucket}/old/a.txt"), tmp=tmp_path)
    assert again.status == 404 and again.json()["error"] == "no_such_key"
    folder = await curl("-X", "DELETE", gateway.url(f"/files/{bucket}/old/"), tmp=tmp_path)
    assert folder.status == 400  # not a recursive delete
    assert await store.keys(bucket) == ["old/b.txt"]
    missing = await curl("-X", "DELETE", gateway.url("/files/no-such-bucket-here/x"), tmp=tmp_path)
    assert missing.status == 404


async def test_empty_files(gateway, bucket, store, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert (await curl("-T", empty, gateway.url(f"/files/{bucket}/"), tmp=tmp_path)).status == 201
    piped = await curl("-T", "-", gateway.url(f"/files/{bucket}/piped-empty"), tmp=tmp_path, input=b"")
    assert piped.status == 201 and piped.json()["size"] == 0
    form = await curl("-F", f"file=@{empty}", gateway.url(f"/files/{bucket}/form/"), tmp=tmp_path)
    assert form.status == 201
    assert sorted(await store.keys(bucket)) == ["empty.txt", "form/empty.txt", "piped-empty"]
    for key in ("empty.txt", "form/empty.txt", "piped-empty"):
        assert (await store.head(bucket, key))["ContentLength"] == 0

    got = await curl(gateway.url(f"/files/{bucket}/empty.txt"), tmp=tmp_path)
    assert got.status == 200 and got.body == b"" and got.headers["content-length"] == "0"
    ranged = await curl("-r", "0-10", gateway.url(f"/files/{bucket}/empty.txt"), tmp=tmp_path)
    assert ranged.status == 416 and ranged.headers["content-range"] == "bytes */0"
    out = tmp_path / "wget-empty"
    res = await run("wget", "-q", "-O", out, gateway.url(f"/files/{bucket}/empty.txt"))
    assert res.rc == 0 and out.read_bytes() == b""


async def test_form_filenames_with_quotes_and_unicode(gateway, bucket, store, tmp_path):
    # curl escapes '"' as %22 (as browsers do); UTF-8 names go through as they are.
    quoted = tmp_path / 'say "hi".txt'
    quoted.write_bytes(b"hi\n")
    uni = tmp_path / "naïve café ☕.txt"
    uni.write_bytes(b"coffee\n")
    got = await curl(
        "-F", f"file=@{quoted}", "-F", f"file=@{uni}", gateway.url(f"/files/{bucket}/names/"), tmp=tmp_path
    )
    assert got.status == 201, got.text
    assert [u["key"] for u in got.json()["uploaded"]] == ['names/say "hi".txt', "names/naïve café ☕.txt"]
    assert await store.get(bucket, "names/naïve café ☕.txt") == b"coffee\n"


# -- long path segments (issue 7, item 14) -------------------------------------------
@pytest.mark.parametrize("size", [1000, PART + 1000], ids=["single-put", "multipart"])
async def test_a_segment_over_255_bytes_is_stored(gateway, bucket, store, tmp_path, size):
    # S3 limits the key (1,024 bytes), not its segments; SeaweedFS's filer caps a
    # segment at 255 bytes unless told otherwise, and the embedded one is told.
    folder, name = "f" * 300, "n" * 600 + ".bin"  # a 1,006-byte key of two long segments
    key = f"{folder}/{name}"
    data = random_bytes(size)
    src = tmp_path / "long"
    src.write_bytes(data)
    got = await curl("-T", src, gateway.url(f"/files/{bucket}/{key}"), tmp=tmp_path)
    assert got.status == 201, got.text
    assert await store.keys(bucket) == [key]
    assert sha256(await store.get(bucket, key)) == sha256(data)
    down = await curl(gateway.url(f"/files/{bucket}/{key}"), tmp=tmp_path)
    assert down.status == 200 and sha256(down.body) == sha256(data)
    assert await store.open_uploads(bucket) == []

    # The same through a form: the file name is the long segment.
    form = await curl("-F", f"file=@{src};filename={name}", gateway.url(f"/files/{bucket}/{folder}/up/"), tmp=tmp_path)
    assert form.status == 201, form.text
    assert [u["key"] for u in form.json()["uploaded"]] == [f"{folder}/up/{name}"]
