"""Big transfers through the shipped nginx site over HTTPS (issue 11, section 5).

The same rendered config/nginx/s3gate.conf and Debian nginx as test_nginx.py,
with curl and wget trusting its certificate (``--cacert``,
``--ca-certificate``) as a user would:

- a 1 GiB ``curl -T`` of a file on disk streams through nginx: while curl is
  still reading its file, the gateway has already stored a part of the
  object's multipart upload in S3 and nginx holds no client-body temp file
  open; the object in S3 then has the file's SHA-256;
- a download cut midway is completed by ``wget -c`` with one range request
  relayed through nginx, and the bytes are the object's.
"""

# ruff: noqa: F811  (pytest fixtures imported from test_nginx.py)
from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import psutil
import pytest

from s3gate.auth.rules import Rule
from tests.integration.helpers import MiB, eventually, random_bytes, run, sha256, sha256_file
from tests.integration.test_nginx import PASSWORD, behind_nginx, start_nginx  # noqa: F401

pytestmark = pytest.mark.integration

# The 1 GiB: about 25 s on a quiet 2-core machine (35-60 s when shared).
SIZE = 1024 * MiB


def write_stamped_file(path: Path, size: int) -> str:
    """A sparse file of SIZE bytes with 32 random bytes every 64 KiB; its SHA-256.

    Made in a blink and never held in memory, yet no two 64 KiB pieces are
    alike: a part lost, repeated or out of order changes the digest.
    """
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset in range(0, size, 64 * 1024):
            fh.seek(offset)
            fh.write(os.urandom(32))
    return sha256_file(path)


def s3_sha256(store, bucket: str, key: str) -> tuple[int, str]:
    """(size, SHA-256) of the object as S3 holds it, read 1 MiB at a time."""
    body = store.client.get_object(Bucket=bucket, Key=key)["Body"]
    digest, size = hashlib.sha256(), 0
    with body:
        for chunk in body.iter_chunks(MiB):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def read_position(pid: int, path: Path) -> int | None:
    """How far process PID has read PATH (its file offset), or None once it has closed the file."""
    try:
        for f in psutil.Process(pid).open_files():
            if f.path == str(path):
                return f.position
    except psutil.NoSuchProcess:
        pass
    return None


def client_body_files(nginx_root: Path) -> list[str]:
    """Request-body temp files nginx's processes hold open: it unlinks them at once, so only /proc shows them."""
    master = psutil.Process(int((nginx_root / "nginx.pid").read_text()))
    links = []
    for proc in (master, *master.children(recursive=True)):
        fd_dir = Path(f"/proc/{proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                links.append(os.readlink(fd))
            except FileNotFoundError:  # closed meanwhile
                continue
    return [link for link in links if str(nginx_root / "client_body") in link]


async def test_big_upload_streams_through_nginx(behind_nginx, bucket, store, tmp_path):
    gw = behind_nginx
    await gw.service.grant("alice", Rule.parse(f"{bucket}:write"))
    src, key = tmp_path / "big.bin", "big/big.bin"
    digest = await asyncio.to_thread(write_stamped_file, src, SIZE)
    curl = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--fail", "--cacert", str(gw.nginx_root / "cert.pem"), "-u", f"alice:{PASSWORD}",
        "-T", str(src), f"{gw.https}/files/{bucket}/{key}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:

        async def part_stored() -> bool:
            return curl.returncode is not None or await store.parts_done(bucket, key) >= 1

        await eventually(part_stored, 120, "the first part of the upload in S3")
        # Read after the part was seen, so curl can only have read further by now: still
        # short of the end means the gateway had the body's start before the client sent it all.
        position = read_position(curl.pid, src)
        spooled = client_body_files(gw.nginx_root)
        assert curl.returncode is None, "curl finished before S3 held any part"
        assert position is not None and position < SIZE, f"curl had read {position} of {SIZE} bytes"
        assert spooled == [], spooled  # nothing buffered to nginx's client_body_temp_path
        out, err = await asyncio.wait_for(curl.communicate(), 600)
    finally:
        if curl.returncode is None:
            curl.kill()
            await curl.wait()
    assert curl.returncode == 0, err.decode()
    assert digest in out.decode(), out  # the SHA-256 the gateway computed over what it received
    assert await asyncio.to_thread(s3_sha256, store, bucket, key) == (SIZE, digest)
    assert "buffered to a temporary file" not in (gw.nginx_root / "error.log").read_text()


async def test_wget_c_resumes_a_cut_download_through_nginx(behind_nginx, bucket, store, tmp_path):
    gw = behind_nginx
    await gw.service.grant("alice", Rule.parse(f"{bucket}:read"))
    data = random_bytes(40 * MiB + 4321)
    await store.put(bucket, "resume.bin", data)
    cacert, url = gw.nginx_root / "cert.pem", f"{gw.https}/files/{bucket}/resume.bin"
    cut = 12 * MiB + 789  # not on any buffer or part boundary
    # A real cut: the reader stops after CUT bytes and curl's connection through nginx drops mid-body.
    partial = await run(
        "bash", "-c", 'curl -sS --cacert "$1" -u "$2" "$3" | head -c "$4" > resume.bin',
        "cut", cacert, f"alice:{PASSWORD}", url, str(cut), cwd=tmp_path,
    )  # fmt: skip
    assert partial.rc == 0, partial.errtext
    assert (tmp_path / "resume.bin").stat().st_size == cut
    wget = await run(
        "wget", "-c", "-S", f"--ca-certificate={cacert}", "--user", "alice", "--password", PASSWORD, url,
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert wget.rc == 0, wget.errtext
    # wget -S prints each response head: the 401 challenge, then one 206 for the rest only.
    assert "HTTP/1.1 206 Partial Content" in wget.errtext, wget.errtext
    assert f"Content-Range: bytes {cut}-{len(data) - 1}/{len(data)}" in wget.errtext, wget.errtext
    assert "200 OK" not in wget.errtext, wget.errtext
    assert sha256_file(tmp_path / "resume.bin") == sha256(data)
