"""The permission matrix on the production stack: gunicorn + aiohttp's worker, auth on, SeaweedFS, curl.

The same table as the fast suite (tests/permission_matrix.py), sent with curl
as a user types it (``-u``, ``-T``, ``-F``, ``-I``, ``-X DELETE``) and checked
against what SeaweedFS really holds. Then ``Expect: 100-continue``: a
refused upload gets its 403 before curl sends a byte of the body.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from s3gate import settings as settings_mod
from s3gate.auth.config import check as check_auth
from s3gate.auth.rules import Rule
from s3gate.auth.service import AuthService
from tests import permission_matrix as matrix
from tests.integration.helpers import Store, curl, run
from tests.integration.test_processes import processes, start_gunicorn  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


class SeaweedObjects:
    def __init__(self, store: Store):
        self.store = store

    async def snapshot(self, bucket: str) -> dict[str, str]:
        listed = (await self.store.call("list_objects_v2", Bucket=bucket)).get("Contents", [])
        out = {}
        for o in listed:
            out[o["Key"]] = matrix.etag_md5(o["ETag"]) or matrix.md5(await self.store.get(bucket, o["Key"]))
        return out

    async def reset(self, bucket: str) -> None:
        now = await self.snapshot(bucket)
        for key in now.keys() - matrix.SEEDS.keys():
            await self.store.call("delete_object", Bucket=bucket, Key=key)
        for key, data in matrix.SEEDS.items():
            if now.get(key) != matrix.SEED_DIGESTS[key]:
                await self.store.put(bucket, key, data)


async def make_users(data_dir: Path, bucket: str) -> None:
    """The matrix's users, written to the data directory gunicorn's workers will open."""
    settings = settings_mod.load(environ={}, use_file=False, auth=True, data_dir=str(data_dir))
    service = await AuthService.open(check_auth(settings))
    try:
        for name, rule in matrix.users(bucket).items():
            await service.add_user(name, matrix.PASSWORD)
            await service.grant(name, Rule.parse(rule))
    finally:
        await service.close()


def curl_sender(base: str, tmp: Path):
    upload = tmp / "new.txt"
    upload.write_bytes(matrix.NEW)

    async def send(method, url, *, user, form=None, body=None) -> matrix.Reply:
        args: list[str | Path] = ["--max-time", "30"]
        if user:
            args += ["-u", f"{user}:{matrix.PASSWORD}"]
        if method == "HEAD":
            args += ["-I"]
        elif form is not None:
            args += ["-F", f"file=@{upload};filename={form}"]
        elif body is not None:
            # curl -T onto a URL ending in '/' appends the file's name; the
            # gateway ignores a last segment named like an archive (backup.tar).
            raw = tmp / "body.tar"
            raw.write_bytes(body)
            args += ["-T", raw]
        elif method != "GET":
            args += ["-X", method]
        res = await curl(*args, base + url, tmp=tmp)
        assert res.rc == 0, res.err
        return matrix.Reply(res.status, res.headers, res.body)

    return send


@pytest.fixture
async def stack(processes, seaweed, store, tmp_path):  # noqa: F811 (the imported fixture)
    bucket, other = await store.new_bucket(), await store.new_bucket()
    await make_users(tmp_path / "gateway-data", bucket)
    gw = await start_gunicorn(processes, seaweed, tmp_path, S3GATE_AUTH="1", S3GATE_LINK_MODE="gateway")
    return gw, bucket, other


async def test_permission_matrix_on_gunicorn_and_seaweedfs(stack, store, tmp_path):
    gw, bucket, other = stack
    send = curl_sender(gw.url(""), tmp_path)
    objects = SeaweedObjects(store)
    wrong = []
    for route in matrix.ROUTES:
        for action in matrix.ACTIONS:
            for scope in matrix.SCOPES:
                problem = await matrix.check(
                    route, action, scope, send=send, objects=objects, bucket=bucket, other=other
                )
                if problem:
                    wrong.append(problem)
    assert wrong == [], "\n".join(wrong)
    assert "Traceback" not in gw.log_tail()


async def curl_expect(url: str, user: str, route: matrix.Route, tmp: Path) -> tuple[list[int], int]:
    """Upload with ``Expect: 100-continue``: (the statuses of every response head, bytes of body sent)."""
    big = tmp / ("big.tar" if route.tar else "big.bin")  # curl -T URL/ appends the name (see curl_sender)
    if not big.exists():
        big.write_bytes(b"x" * (256 * 1024))  # large enough that a sent body would show
    body = ["-F", f"file=@{big};filename=new.txt"] if route.form else ["-T", big]
    res = await run(
        "curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-D", "-", "-w", "\nsize_upload=%{size_upload}",
        "-u", f"{user}:{matrix.PASSWORD}", "-H", "Expect: 100-continue",
        # curl sends the body anyway after this long without an answer: make
        # that far longer than any answer, so only the server decides.
        "--expect100-timeout", "30",
        *body, url,
    )  # fmt: skip
    assert res.rc == 0, res.errtext
    text, _, sent = res.text.rpartition("\nsize_upload=")
    statuses = [int(line.split()[1]) for line in text.splitlines() if line.startswith("HTTP/")]
    return statuses, int(sent)


async def test_refused_uploads_get_403_before_the_body(stack, store, tmp_path):
    gw, bucket, _ = stack
    objects = SeaweedObjects(store)
    await objects.reset(bucket)
    before = await objects.snapshot(bucket)
    seen = {}
    for route in matrix.WRITE_ROUTES:
        for action, scope in [("read", "bucket"), ("list", "bucket"), ("delete", "bucket"), ("write", "docs")]:
            if matrix.expected_allowed(route, action, scope):
                continue
            user = matrix.user_name(action, scope)
            seen[(route.id, user)] = await curl_expect(gw.url(route.url(bucket)), user, route, tmp_path)
    assert seen and all(v == ([403], 0) for v in seen.values()), seen
    assert await objects.snapshot(bucket) == before
    # The control: the writer's upload gets 100 Continue, sends its body, is stored.
    put = next(r for r in matrix.ROUTES if r.id == "put-docs")
    statuses, sent = await curl_expect(gw.url(put.url(bucket)), "write-docs", put, tmp_path)
    assert statuses == [100, 201] and sent >= 256 * 1024, (statuses, sent)
    assert put.target in await objects.snapshot(bucket)
