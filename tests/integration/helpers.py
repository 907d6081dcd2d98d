"""What the integration tests share besides their fixtures (conftest.py).

- ``Store``: what really landed in S3, asked through a plain botocore client
  (run in a thread, so the gateway sharing the test's event loop keeps going).
- ``GatewayServer`` / ``Gateway`` / ``settings_for``: ``create_app(settings)``
  served on 127.0.0.1 and a free port, with production's
  ``handler_cancellation=False`` and a 5 MiB part size (S3's minimum) so
  many-part uploads stay quick.
- ``run`` / ``curl``: subprocesses through asyncio (never blocking: the
  server runs in the same loop as the test); ``eventually``; raw HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from s3gate import keys
from s3gate.app import make_runner
from s3gate.embedded import SeaweedFS
from tests.conftest import make_settings

KiB = 1024
MiB = 1024 * KiB
# The gateway's part size here. S3's minimum: SeaweedFS 4.48 enforces it too
# (CompleteMultipartUpload answers EntityTooSmall for smaller parts).
PART = 5 * MiB

_names = itertools.count()


# -- helpers ------------------------------------------------------------------
def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def random_bytes(n: int) -> bytes:
    # os.urandom is fast enough (~1 GB/s) and defeats any dedup or compression.
    return os.urandom(n)


class Tree:
    """A folder of test files built under root: tree.add("a/b.txt", data); tree.files maps names to paths."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, Path] = {}

    def add(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = path


def tree_digests(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file below root."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class Result:
    rc: int
    out: bytes
    err: bytes

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def errtext(self) -> str:
        return self.err.decode("utf-8", "replace")


async def run(
    *argv: str | Path,
    input: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> Result:
    """Run a command without blocking the event loop; kill it on timeout."""
    proc = await asyncio.create_subprocess_exec(
        *map(str, argv),
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out, err)


@dataclass
class HttpResult:
    """One curl exchange: the final response's status and headers, the body, curl's stderr."""

    rc: int
    status: int
    headers: dict[str, str]  # lower-case names, last response only
    all_header_blocks: list[str]  # every response head curl saw (100 Continue, redirects, ...)
    body: bytes
    err: str

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _parse_heads(raw: str) -> list[str]:
    return [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]


def _head_fields(block: str) -> tuple[int, dict[str, str]]:
    lines = block.strip().split("\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def curl(*args: str | Path, tmp: Path, input: bytes | None = None, timeout: float = 60) -> HttpResult:
    """`curl -sS ARGS` with the response head and body captured separately."""
    n = next(_names)
    head_file, body_file = tmp / f".curl-head-{n}", tmp / f".curl-body-{n}"
    res = await run(
        "curl", "-sS", "-D", head_file, "-o", body_file, *args, input=input, timeout=timeout
    )
    raw = head_file.read_text("latin-1") if head_file.exists() else ""
    blocks = _parse_heads(raw)
    status, headers = _head_fields(blocks[-1]) if blocks else (0, {})
    body = body_file.read_bytes() if body_file.exists() else b""
    head_file.unlink(missing_ok=True)
    body_file.unlink(missing_ok=True)
    return HttpResult(res.rc, status, headers, blocks, body, res.errtext)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll an async check until it holds (aborts finish shortly after the client is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


# -- SeaweedFS ----------------------------------------------------------------
class Store:
    """What SeaweedFS really holds, asked with a plain botocore client off the event loop."""

    def __init__(self, seaweed: SeaweedFS):
        self.seaweed = seaweed
        self.client = seaweed.client(max_pool_connections=32)

    async def call(self, name: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.client, name), **kwargs)

    def drop_bucket(self, name: str) -> None:
        """Empty and delete a bucket (uploads aborted, objects deleted), best effort."""
        import botocore.exceptions

        c = self.client
        try:
            for up in c.list_multipart_uploads(Bucket=name).get("Uploads", []):
                c.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
            for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
                batch = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if batch:
                    c.delete_objects(Bucket=name, Delete={"Objects": batch, "Quiet": True})
            c.delete_bucket(Bucket=name)
        except botocore.exceptions.ClientError:
            pass  # a test that broke the bucket on purpose; the store is thrown away at the end

    async def new_bucket(self) -> str:
        name = f"it-{os.getpid()}-{next(_names)}-{secrets.token_hex(3)}"
        await self.call("create_bucket", Bucket=name)
        return name

    async def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            resp = await self.call("list_objects_v2", **params)
            out.extend(o["Key"] for o in resp.get("Contents", []))
            if not resp.get("IsTruncated"):
                return out
            params["ContinuationToken"] = resp["NextContinuationToken"]

    async def open_uploads(self, bucket: str) -> list[dict[str, Any]]:
        return (await self.call("list_multipart_uploads", Bucket=bucket)).get("Uploads", [])

    async def parts_done(self, bucket: str, key: str) -> int:
        """How many parts of key's open multipart upload S3 already holds (0 if none is open)."""
        uploads = [u for u in await self.open_uploads(bucket) if u["Key"] == key]
        if not uploads:
            return 0
        resp = await self.call("list_parts", Bucket=bucket, Key=key, UploadId=uploads[0]["UploadId"])
        return len(resp.get("Parts", []))

    async def get(self, bucket: str, key: str) -> bytes:
        def read() -> bytes:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            with body:
                return body.read()

        return await asyncio.to_thread(read)

    async def head(self, bucket: str, key: str) -> dict[str, Any]:
        return await self.call("head_object", Bucket=bucket, Key=key)

    async def put(self, bucket: str, key: str, data: bytes, **kwargs: Any) -> str:
        resp = await self.call("put_object", Bucket=bucket, Key=key, Body=data, **kwargs)
        return resp["ETag"]

    async def exists(self, bucket: str, key: str) -> bool:
        return key in await self.keys(bucket, key)

    async def assert_nothing_left(self, bucket: str, key: str, *, timeout: float = 5.0) -> None:
        """No object under key and no open multipart upload in the bucket (polls: aborts are async)."""

        async def clean() -> bool:
            return not await self.exists(bucket, key) and not await self.open_uploads(bucket)

        await eventually(clean, timeout, f"no object {key!r} and no open multipart upload in {bucket}")


# -- the gateway ----------------------------------------------------------------
@dataclass
class Gateway:
    server: TestServer
    settings: Any = field(repr=False)

    @property
    def app(self):
        return self.server.app

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def links(self):
        return self.app[keys.LINKS]


def settings_for(seaweed: SeaweedFS, data_dir: Path, **overrides: Any):
    """The test gateway's settings on this SeaweedFS (also for gateways a whole module shares)."""
    values: dict[str, Any] = dict(
        s3_endpoint=seaweed.endpoint,
        s3_access_key=seaweed.credentials.access_key,
        s3_secret_key=seaweed.credentials.secret_key,
        data_dir=str(data_dir),
        part_size=PART,
        parts_in_flight=2,
        upload_memory_budget=32 * MiB,
    )
    values.update(overrides)
    return make_settings(**values)


class GatewayServer(TestServer):
    """aiohttp's TestServer (127.0.0.1, a free port), but run the way production runs it.

    TestServer always passes ``handler_cancellation=True``; gunicorn's aiohttp
    worker (``app_factory``'s AppRunner) leaves it False, so a client that goes
    away shows up as a read error, not as a cancelled handler. Both must leave
    S3 clean; tests choose.
    """

    def __init__(self, app: web.Application, *, handler_cancellation: bool = False):
        super().__init__(app, host="127.0.0.1")
        self._handler_cancellation = handler_cancellation

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs["handler_cancellation"] = self._handler_cancellation
        return make_runner(self.app, self.app[keys.SETTINGS], **kwargs)


# -- raw HTTP/1.1 over a socket ------------------------------------------------------
async def read_head(reader: asyncio.StreamReader, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read one response head (status line + headers) from a raw connection."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status, headers = _head_fields(raw.decode("latin-1"))
    return status, headers, raw


async def read_response(reader: asyncio.StreamReader, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Read a final response (skipping 1xx) with a Content-Length or chunked body."""
    while True:
        status, headers, _ = await read_head(reader, timeout)
        if status >= 200:
            break
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout)
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await asyncio.wait_for(reader.readline(), timeout)).strip(), 16)
            chunk = await asyncio.wait_for(reader.readexactly(size + 2), timeout)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await asyncio.wait_for(reader.read(), timeout)
    return status, headers, body


def request_head(method: str, path: str, port: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def form_body(boundary: str, files: list[tuple[str, bytes]]) -> bytes:
    out = b""
    for name, data in files:
        out += (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()
