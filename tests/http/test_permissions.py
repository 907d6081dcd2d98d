"""The permission matrix on the real app (create_app + moto, auth on): each route asks for the right right.

Users hold one action each, on a whole bucket or on its docs/ folder; every
route (the seed's four, the upload forms, the REST face, the bucket list) is
tried by each of them: allowed means success and the effect in S3, refused
means 403 and S3 untouched (tests/permission_matrix.py). An upload refused for
lack of rights is refused before the body: no ``100 Continue``.

One app serves the whole module (production argon2 hashes cost tens of ms:
eight users are made once); every check starts from a reset bucket.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from s3gate import keys
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from tests import permission_matrix as matrix
from tests.conftest import make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")
_n = itertools.count()


class MotoObjects:
    """The bucket's contents, read with plain botocore off the event loop (the gateway shares the loop)."""

    def __init__(self, s3):
        self.s3 = s3

    def _snapshot(self, bucket: str) -> dict[str, str]:
        def digest(o) -> str:
            return matrix.etag_md5(o["ETag"]) or matrix.md5(
                self.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            )

        return {o["Key"]: digest(o) for o in self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])}

    async def snapshot(self, bucket: str) -> dict[str, str]:
        return await asyncio.to_thread(self._snapshot, bucket)

    def _reset(self, bucket: str) -> None:
        now = self._snapshot(bucket)
        for key in now.keys() - matrix.SEEDS.keys():
            self.s3.delete_object(Bucket=bucket, Key=key)
        for key, data in matrix.SEEDS.items():
            if now.get(key) != matrix.SEED_DIGESTS[key]:
                self.s3.put_object(Bucket=bucket, Key=key, Body=data)

    async def reset(self, bucket: str) -> None:
        await asyncio.to_thread(self._reset, bucket)


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{matrix.PASSWORD}".encode()).decode()


class Gateway:
    def __init__(self, server: TestServer, session: aiohttp.ClientSession, bucket: str, other: str, objects):
        self.server, self.session, self.bucket, self.other, self.objects = server, session, bucket, other, objects

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    async def send(self, method, url, *, user, form=None, body=None) -> matrix.Reply:
        headers = {"Authorization": basic(user)} if user else {}
        data: object = body
        if form is not None:
            data = aiohttp.FormData()
            data.add_field("file", matrix.NEW, filename=form, content_type="application/octet-stream")
        async with self.session.request(
            method, self.server.make_url(url), headers=headers, data=data, allow_redirects=False
        ) as resp:
            return matrix.Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read())

    async def check(self, route: matrix.Route, action: str, scope: str) -> str | None:
        return await matrix.check(
            route, action, scope, send=self.send, objects=self.objects, bucket=self.bucket, other=self.other
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(moto_endpoint, s3, tmp_path_factory):
    bucket, other = (f"perm-{os.getpid()}-{next(_n)}" for _ in range(2))
    for name in (bucket, other):
        s3.create_bucket(Bucket=name)
    settings = make_settings(
        auth=True, login_delay=0, link_mode="gateway",
        s3_endpoint=moto_endpoint, s3_access_key="testing", s3_secret_key="testing",
        data_dir=str(tmp_path_factory.mktemp("perm") / "data"),
    )  # fmt: skip
    app = create_app(settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    service = app[keys.AUTH]
    for name, rule in matrix.users(bucket).items():
        await service.add_user(name, matrix.PASSWORD)
        await service.grant(name, Rule.parse(rule))
    async with aiohttp.ClientSession() as session:
        yield Gateway(server, session, bucket, other, MotoObjects(s3))
    await server.close()


@pytest.mark.parametrize("scope", matrix.SCOPES)
@pytest.mark.parametrize("action", matrix.ACTIONS)
@pytest.mark.parametrize("route", matrix.ROUTES, ids=lambda r: r.id)
async def test_permission_matrix(gateway, route, action, scope):
    assert await gateway.check(route, action, scope) is None


# -- Expect: 100-continue ----------------------------------------------------------------
def upload_request(route: matrix.Route, bucket: str, port: int, user: str) -> tuple[bytes, bytes]:
    """The head (with ``Expect: 100-continue``) and the body of an upload of NEW by ``user``."""
    if route.form:
        boundary = "matrixboundary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{route.form}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + matrix.NEW
            + f"\r\n--{boundary}--\r\n".encode()
        )
        content_type = f"multipart/form-data; boundary={boundary}"
    elif route.tar:
        body, content_type = matrix.NEW_TAR, "application/x-tar"
    else:
        body, content_type = matrix.NEW, "application/octet-stream"
    head = [
        f"{route.method} {route.url(bucket)} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Authorization: {basic(user)}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Expect: 100-continue",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode(), body


async def read_status(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return int(raw.split(b" ", 2)[1]), raw


# Every write route, by users who may not write there: no 100 Continue, a 403, no body sent.
REFUSED_UPLOADS = [
    (route, action, scope)
    for route in matrix.WRITE_ROUTES
    for action in matrix.ACTIONS
    for scope in ("bucket", "docs")
    if not matrix.expected_allowed(route, action, scope) and (action == "write" or scope == "bucket")
]


@pytest.mark.parametrize(
    "route, action, scope", REFUSED_UPLOADS, ids=[f"{r.id}-{a}-{s}" for r, a, s in REFUSED_UPLOADS]
)
async def test_refused_upload_gets_403_before_the_body(gateway, route, action, scope):
    await gateway.objects.reset(gateway.bucket)
    head, _ = upload_request(route, gateway.bucket, gateway.port, matrix.user_name(action, scope))
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(head)
        await writer.drain()
        # The body is never sent: the first answer must be the refusal itself (RFC 9110 §10.1.1).
        status, raw = await read_status(reader)
        assert status == 403, raw
    finally:
        writer.close()
    assert await gateway.objects.snapshot(gateway.bucket) == matrix.SEED_DIGESTS


@pytest.mark.parametrize("route", matrix.WRITE_ROUTES, ids=lambda r: r.id)
async def test_allowed_upload_gets_100_continue_then_201(gateway, route):
    """The control for the test above: the same exchange by the writer goes through."""
    await gateway.objects.reset(gateway.bucket)
    head, body = upload_request(route, gateway.bucket, gateway.port, matrix.user_name("write", "bucket"))
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(head)
        await writer.drain()
        status, raw = await read_status(reader)
        assert status == 100, raw
        writer.write(body)
        await writer.drain()
        status, raw = await read_status(reader)
        assert status == 201, raw
    finally:
        writer.close()
    key = (route.target + "new.txt") if route.form or route.tar else route.target
    assert (await gateway.objects.snapshot(gateway.bucket))[key] == matrix.md5(matrix.NEW)
