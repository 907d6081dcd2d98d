"""Whole folders with real tools: SeaweedFS behind the gateway, curl, tar, gzip and unzip.

A nested folder of a few hundred files (several levels, one directory of 150
entries, names with spaces and non-ASCII) goes up straight to SeaweedFS, comes
back through ?archive=tar|tar.gz|zip and is unpacked by the real tar and
unzip, compared file by file by checksum. Recursive delete is checked on a
10,000-key prefix. A TCP proxy that cuts S3's answer midway stands in for a
store failing mid-archive.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from s3gate import keys
from tests.integration.helpers import (
    Tree,
    curl,
    eventually,
    random_bytes,
    run,
    tree_digests,
)

pytestmark = pytest.mark.integration


def make_tree(root: Path) -> dict[str, Path]:
    """~300 files: 150 in one directory, four levels deep, spaces and unicode in names."""
    tree = Tree(root)
    add = tree.add

    for i in range(150):
        add(f"many/file {i:03d}.txt", f"line {i}\n".encode() * (i + 1))
    for a in range(3):
        for b in range(4):
            for c in range(10):
                add(f"lvl {a}/ébène {b}/ναι {c}/data-{a}{b}{c}.bin", random_bytes(1000 + 37 * c))
    add("big/one.bin", random_bytes(3 * 1024 * 1024 + 1))
    add("empty", b"")
    add("名前 with spaces.txt", b"unicode name\n")
    return tree.files


@pytest.fixture(scope="module")
def photos(seaweed, store, tmp_path_factory):
    """A bucket holding the tree under photos/, plus objects right at its boundary."""
    bucket = "it-folders-photos"
    store.client.create_bucket(Bucket=bucket)
    work = tmp_path_factory.mktemp("folders")
    src = work / "src"
    files = make_tree(src)
    assert len(files) > 250
    outside = work / "outside.txt"
    outside.write_bytes(b"not in photos/\n")
    objects = {f"photos/{rel}": path for rel, path in files.items()}
    objects |= {"photos": outside, "photos-private/secret.txt": outside}
    seaweed.put_many(bucket, objects, work)
    return bucket, src


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "zip"])
async def test_nested_folder_round_trips_through_real_tar_and_unzip(gateway, photos, tmp_path, fmt):
    bucket, src = photos
    archive = tmp_path / f"photos.{fmt}"
    got = await run(
        "curl", "-sS", "--fail", "-o", archive, "-D", "-", gateway.url(f"/files/{bucket}/photos/?archive={fmt}")
    )
    assert got.rc == 0, got.errtext
    assert f'filename="photos.{fmt}"' in got.text
    out = tmp_path / "out"
    out.mkdir()
    if fmt == "zip":
        tested = await run("unzip", "-t", archive)
        assert tested.rc == 0 and "No errors detected" in tested.text, tested.text[-2000:]
        unpacked = await run("unzip", "-q", archive, "-d", out)
    else:
        unpacked = await run("tar", "xf", archive, "-C", out)  # tar detects gzip itself
        if fmt == "tar.gz":
            assert (await run("gzip", "-t", archive)).rc == 0
    assert unpacked.rc == 0, unpacked.errtext
    # Identical, file for file; nothing from photos-private/ or the object named photos.
    assert tree_digests(out) == tree_digests(src)


async def test_piped_into_tar_as_the_readme_shows(gateway, photos, tmp_path):
    bucket, src = photos
    (tmp_path / "x").mkdir()
    piped = await run(
        "sh",
        "-c",
        f"curl -sS --fail '{gateway.url(f'/files/{bucket}/photos/?archive=tar.gz')}' | tar xz",
        cwd=tmp_path / "x",
    )
    assert piped.rc == 0, piped.errtext
    assert tree_digests(tmp_path / "x") == tree_digests(src)


async def test_client_leaving_mid_archive_leaves_the_gateway_healthy(gateway, photos, tmp_path):
    bucket, _ = photos
    budget = gateway.app[keys.BUDGET]
    # head closes the pipe after 64 KiB: curl stops reading and hangs up.
    cut = await run(
        "sh", "-c", f"curl -sS '{gateway.url(f'/files/{bucket}/photos/?archive=zip')}' | head -c 65536 | wc -c"
    )
    assert cut.text.strip() == "65536"

    async def released() -> bool:
        return budget.used == 0

    await eventually(released, what="the archive's memory to be given back")
    whole = await run(
        "sh",
        "-c",
        f"curl -sS --fail '{gateway.url(f'/files/{bucket}/photos/?archive=zip')}' > {tmp_path}/a.zip && unzip -tq {tmp_path}/a.zip",
    )
    assert whole.rc == 0, whole.errtext + whole.text


# -- S3 failing mid-archive ------------------------------------------------------------------
class CuttingProxy:
    """A TCP proxy to SeaweedFS that drops any connection once it has relayed `limit` bytes of answers."""

    def __init__(self, upstream_port: int, limit: int):
        self.upstream_port, self.limit = upstream_port, limit
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(src, dst, limit: int | None) -> None:
            sent = 0
            try:
                while data := await src.read(65536):
                    if limit is not None and sent + len(data) > limit:
                        self.cuts += 1
                        break
                    sent += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.transport.abort()
                up_writer.transport.abort()

        await asyncio.gather(pipe(reader, up_writer, None), pipe(up_reader, writer, self.limit))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_storage_failing_mid_archive_cuts_the_response(start_gateway, seaweed, photos, tmp_path):
    bucket, _ = photos
    proxy = CuttingProxy(int(seaweed.endpoint.rsplit(":", 1)[1]), limit=1024 * 1024)
    port = await proxy.start()
    try:
        gateway = await start_gateway(s3_endpoint=f"http://127.0.0.1:{port}")
        for fmt, check in (("tar", ["tar", "tf"]), ("zip", ["unzip", "-tq"])):
            archive = tmp_path / f"cut.{fmt}"
            got = await run("curl", "-sS", "-o", archive, gateway.url(f"/files/{bucket}/photos/big/?archive={fmt}"))
            # curl: (18) transfer closed with outstanding read data remaining
            assert got.rc != 0, f"{fmt}: curl saw a complete response"
            opened = await run(*check, archive)
            assert opened.rc != 0, f"{fmt}: the cut archive opens as if whole"
        assert proxy.cuts >= 2
        assert gateway.app[keys.BUDGET].used == 0
    finally:
        await proxy.close()


# -- recursive delete --------------------------------------------------------------------------
async def test_ten_thousand_keys_dry_run_then_delete_completely(gateway, seaweed, store, bucket, tmp_path):
    one = tmp_path / "one"
    one.write_bytes(b"xy")
    n = 10_000
    objects = {f"bulk/{i % 7}/k{i:05d}": one for i in range(n)}
    objects |= {"bulk": one, "bulk-keep/a": one}
    await asyncio.to_thread(seaweed.put_many, bucket, objects, tmp_path)  # curl runs off the loop

    dry = await curl("-X", "DELETE", gateway.url(f"/files/{bucket}/bulk/?recursive=1&dry_run=1"), tmp=tmp_path)
    assert dry.status == 200, dry.text
    assert dry.json()["would_delete"] == n and dry.json()["bytes"] == 2 * n
    assert len(await store.keys(bucket)) == n + 2

    done = await curl("-X", "DELETE", gateway.url(f"/files/{bucket}/bulk/?recursive=1"), tmp=tmp_path, timeout=300)
    assert done.status == 200, done.text
    body = done.json()
    assert body["deleted"] == dry.json()["would_delete"] and body["bytes"] == dry.json()["bytes"]
    assert body["complete"] is True
    assert sorted(await store.keys(bucket)) == ["bulk", "bulk-keep/a"]  # the boundary held


async def test_delete_without_recursive_explains(gateway, photos, tmp_path):
    bucket, _ = photos
    got = await curl("-X", "DELETE", gateway.url(f"/files/{bucket}/photos/"), tmp=tmp_path)
    assert got.status == 400 and "recursive=1" in got.text


async def test_a_folder_archive_link_works_with_curl_alone(start_gateway, photos, tmp_path):
    from s3gate.auth.rules import Rule

    bucket, src = photos
    gw = await start_gateway(auth=True, login_delay=0)
    await gw.server.app[keys.AUTH].add_user("alice", "correct horse battery staple")
    await gw.server.app[keys.AUTH].grant("alice", Rule.parse(f"{bucket}/photos:read,list"))
    # As the README shows: curl prints the link ...
    minted = await run(
        "curl", "-sS", "--fail", "-u", "alice:correct horse battery staple",
        gw.url(f"/files/{bucket}/photos/?archive=zip&mode=redirect"),
    )  # fmt: skip
    assert minted.rc == 0, minted.errtext
    link = minted.text.strip()
    assert "archive=zip" in link and "sig=" in link
    # ... and someone without an account fetches it with curl -L -OJ.
    (tmp_path / "dl").mkdir()
    got = await run("curl", "-sS", "--fail", "-L", "-OJ", link, cwd=tmp_path / "dl")
    assert got.rc == 0, got.errtext
    archive = tmp_path / "dl" / "photos.zip"
    assert (await run("unzip", "-q", archive, "-d", tmp_path / "out")).rc == 0
    assert tree_digests(tmp_path / "out") == tree_digests(src)
    # The same link on another format is refused, and curl says so.
    refused = await run("curl", "-sS", "--fail", "-o", "/dev/null", link.replace("archive=zip", "archive=tar"))
    assert refused.rc == 22 and "403" in refused.errtext
