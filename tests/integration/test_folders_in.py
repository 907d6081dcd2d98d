"""Folders in and listings out, with real tools: SeaweedFS behind the gateway, tar, gzip, bzip2, xz, curl, wget.

- A nested folder (four levels, one directory of 1,100 entries, names with
  spaces and non-ASCII) goes in with `tar c | curl -T - ?extract=tar` (plain,
  gzip, bzip2, xz), comes back out with `?archive=tar | tar x`, and is mirrored
  with `wget -r` from the HTML listing and with `format=text | wget -i -`:
  identical by checksum every way.
- Archives made with Python's tarfile carry what `tar` would not write: `../`,
  an absolute path, a symlink; a tar.gz cut midway; a member of three parts.
- A 10,000-key prefix lists through every format.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from s3gate import keys
from tests.integration.helpers import MiB, Tree, curl, eventually, random_bytes, run, tree_digests

pytestmark = pytest.mark.integration

WIDE = 1100  # entries in one directory: more than one S3 page (and one JSON page) of 1,000


def make_tree(root: Path) -> dict[str, Path]:
    tree = Tree(root)
    add = tree.add

    for i in range(WIDE):
        add(f"wide dir/file {i:04d}.txt", f"line {i}\n".encode() * (i % 7 + 1))
    for a in range(2):
        for b in range(3):
            for c in range(5):
                add(f"lvl {a}/ébène {b}/ναι {c}/data-{a}{b}{c}.bin", random_bytes(500 + 37 * c))
    add("empty", b"")
    add("名前 with spaces.txt", b"unicode name\n")
    add("odd #1 100%.txt", b"percent and hash\n")
    return tree.files


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("folders-in") / "src"
    make_tree(src)
    return src


def summary(got) -> dict:
    assert got.status in (201, 400, 413), got.text
    return got.json()


@pytest.mark.parametrize("flag", ["", "z", "j", "J"], ids=["tar", "gzip", "bzip2", "xz"])
async def test_tar_in_then_tar_out_round_trips(gateway, bucket, tree, tmp_path, flag):
    url = gateway.url(f"/files/{bucket}/backup/?extract=tar")
    # As the README shows it: the archive is piped, length unknown (chunked).
    piped = await run("sh", "-c", f"tar c{flag} -C '{tree}' . | curl -sS --fail -T - '{url}'", timeout=300)
    assert piped.rc == 0, piped.errtext
    body = json.loads(piped.out)
    files = tree_digests(tree)
    assert body["complete"] is True and body["errors"] == []
    assert {f["key"]: f["sha256"] for f in body["stored"]} == {f"backup/{k}": v for k, v in files.items()}
    assert all(s["reason"].startswith("directory") for s in body["skipped"])  # ./, ./wide dir, ...
    out = tmp_path / "out"
    out.mkdir()
    back = await run(
        "sh", "-c", f"curl -sS --fail '{gateway.url(f'/files/{bucket}/backup/?archive=tar')}' | tar x -C '{out}'"
    )
    assert back.rc == 0, back.errtext
    assert tree_digests(out) == files


@pytest.fixture(scope="module")
def mirrored(seaweed, store, tree, tmp_path_factory) -> str:
    bucket = "it-folders-in-mirror"
    store.client.create_bucket(Bucket=bucket)
    objects = {f"photos/{p.relative_to(tree)}": p for p in tree.rglob("*") if p.is_file()}
    seaweed.put_many(bucket, objects, tmp_path_factory.mktemp("mirror-upload"))
    return bucket


async def test_wget_mirrors_a_folder_from_the_html_listing(gateway, mirrored, tree, tmp_path):
    out = tmp_path / "mirror"
    out.mkdir()
    # /files/BUCKET/photos/: --cut-dirs=3 drops files/BUCKET/photos; -R drops the listings once read.
    url = gateway.url(f"/files/{mirrored}/photos/?format=html")
    got = await run("wget", "-q", "-r", "-l", "inf", "-np", "-nH", "--cut-dirs=3", "-R", "index.html*", url,
                    cwd=out, timeout=300)  # fmt: skip
    assert got.rc == 0, got.errtext[-2000:]
    assert tree_digests(out) == tree_digests(tree)


async def test_text_listing_piped_into_wget(gateway, mirrored, tree, tmp_path):
    out = tmp_path / "mirror"
    out.mkdir()
    url = gateway.url(f"/files/{mirrored}/photos/?recursive=1&format=text")
    got = await run("sh", "-c", f"curl -sS --fail '{url}' | wget -q -x -nH --cut-dirs=3 -i -", cwd=out, timeout=300)
    assert got.rc == 0, got.errtext[-2000:]
    assert tree_digests(out) == tree_digests(tree)


# -- what tar would not write ------------------------------------------------------------------------
def python_tar(members: list[tuple[str, bytes | str]], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def test_escaping_members_are_refused_and_reported_while_good_ones_land(gateway, bucket, store, tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(
        python_tar(
            [
                ("ok/one.txt", b"one"),
                ("../../etc/cron.d/evil", b"evil"),
                ("/etc/passwd", b"evil"),
                ("ok/link", "/etc/passwd"),
                ("ok/two.txt", b"two"),
            ],
            "w:gz",
        )
    )
    got = await curl("-T", archive, gateway.url(f"/files/{bucket}/in/?extract=tar"), tmp=tmp_path)
    body = summary(got)
    assert got.status == 201
    assert sorted(await store.keys(bucket)) == ["in/ok/one.txt", "in/ok/two.txt"]
    assert {s["name"]: s["reason"] for s in body["skipped"]} == {
        "../../etc/cron.d/evil": "'..' in the path",
        "/etc/passwd": "absolute path",
        "ok/link": "symbolic link",
    }


async def test_a_member_larger_than_a_part_goes_multipart(gateway, bucket, store, tmp_path):
    big = random_bytes(11 * MiB + 5)  # parts of 5 + 5 + 1 MiB
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(big)
    (src / "small.txt").write_bytes(b"small")
    url = gateway.url(f"/files/{bucket}/mp/?extract=tar")
    got = await run("sh", "-c", f"tar cz -C '{src}' big.bin small.txt | curl -sS --fail -T - '{url}'", timeout=120)
    assert got.rc == 0, got.errtext
    assert [f["key"] for f in json.loads(got.out)["stored"]] == ["mp/big.bin", "mp/small.txt"]
    head = await store.head(bucket, "mp/big.bin")
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == len(big)
    assert await store.get(bucket, "mp/big.bin") == big
    assert gateway.app[keys.BUDGET].used == 0


async def test_a_truncated_tar_gz_names_what_was_stored_and_leaves_nothing_partial(gateway, bucket, store, tmp_path):
    data = python_tar([("a.txt", b"a"), ("b.txt", b"b"), ("big.bin", random_bytes(11 * MiB)), ("c.txt", b"c")], "w:gz")
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(data[: int(len(data) * 0.7)])  # inside big.bin's third part
    got = await curl("-T", archive, gateway.url(f"/files/{bucket}/t/?extract=tar"), tmp=tmp_path)
    body = summary(got)
    assert got.status == 400 and body["complete"] is False
    assert [f["key"] for f in body["stored"]] == ["t/a.txt", "t/b.txt"]
    assert body["errors"][0]["name"] == "big.bin"
    await store.assert_nothing_left(bucket, "t/big.bin")  # no object and no open multipart upload
    assert sorted(await store.keys(bucket)) == ["t/a.txt", "t/b.txt"]


async def test_a_client_leaving_mid_member_leaves_nothing_partial(gateway, bucket, store):
    data = python_tar([("first.txt", b"first"), ("big.bin", random_bytes(12 * MiB))], "w:gz")
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head = (
        f"PUT /files/{bucket}/gone/?extract=tar HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(head.encode())
    for i in range(0, int(len(data) * 0.8), 64 * 1024):  # most of big.bin: its first parts reach S3
        piece = data[i : i + 64 * 1024]
        writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await writer.drain()

    async def parts_sent() -> bool:
        return await store.parts_done(bucket, "gone/big.bin") >= 1

    await eventually(parts_sent, 30, "the first part of big.bin in S3")
    writer.transport.abort()
    await store.assert_nothing_left(bucket, "gone/big.bin", timeout=15)
    assert await store.keys(bucket) == ["gone/first.txt"]


# -- a 10,000-key prefix through every format ----------------------------------------------------------
KEYS = [f"many/d{i % 4}/k{i:05d}.txt" for i in range(10_000)]


@pytest.fixture(scope="module")
def many(seaweed, store, tmp_path_factory) -> str:
    bucket = "it-folders-in-many"
    store.client.create_bucket(Bucket=bucket)
    work = tmp_path_factory.mktemp("many")
    one = work / "one"
    one.write_bytes(b"x")
    seaweed.put_many(bucket, dict.fromkeys(KEYS, one), work)
    return bucket


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


async def test_ten_thousand_keys_list_through_every_format(gateway, many, tmp_path):
    base = f"/files/{many}/many/"
    # json: page by page with the cursor
    seen: list[str] = []
    cursor = None
    while True:
        query = "recursive=1" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = (await curl(gateway.url(f"{base}?{query}"), tmp=tmp_path)).json()
        seen += [o["key"] for o in page["objects"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(KEYS)
    # ndjson and text: one request each, streamed
    got = await curl(gateway.url(f"{base}?recursive=1&format=ndjson"), tmp=tmp_path)
    assert [json.loads(line)["key"] for line in got.body.splitlines()] == sorted(KEYS)
    got = await curl(gateway.url(f"{base}?recursive=1&format=text"), tmp=tmp_path)
    assert got.text.splitlines() == [gateway.url(f"/files/{many}/{k}") for k in sorted(KEYS)]
    # html: the whole folder in one page (what wget -r reads), and in pages with next links
    got = await curl(gateway.url(f"{base}?recursive=1&format=html"), tmp=tmp_path)
    parser = _Hrefs()
    parser.feed(got.text)
    assert [h for h in parser.hrefs if h.startswith("./")] == ["./" + k[len("many/") :] for k in sorted(KEYS)]
    top = await curl(gateway.url(f"{base}?format=html"), tmp=tmp_path)
    parser = _Hrefs()
    parser.feed(top.text)
    assert [h for h in parser.hrefs if h.startswith("./")] == [f"./d{i}/?format=html" for i in range(4)]
