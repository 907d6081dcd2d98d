"""GET /metrics and what it counts: the real app on moto, served by the production runner (make_runner).

In one process (no PROMETHEUS_MULTIPROC_DIR) the metrics live in
prometheus-client's default registry, shared by every app of the test
session, so each test compares a scrape before with a scrape after. The
multiprocess path (gunicorn's workers) is tested here with real processes
writing their files (test_workers_add_up_and_a_dead_workers_gauges_leave),
and end to end in tests/integration/test_metrics.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable

import aiohttp
import botocore.exceptions
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from s3gate import keys, metrics
from s3gate.app import create_app, make_runner
from s3gate.auth.rules import Rule
from s3gate.settings import replace
from s3gate.storage.budget import MemoryBudget
from s3gate.storage.s3 import Storage, _watch_calls
from tests.conftest import make_settings
from tests.http.test_server import exchange  # one raw HTTP/1.1 exchange, to the last byte

PASSWORD = "correct horse battery"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Served:
    def __init__(self, app: web.Application, port: int):
        self.app, self.port = app, port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def scrape(self, headers: dict[str, str] | None = None) -> Samples:
        async with aiohttp.ClientSession() as s, s.get(self.url("/metrics"), headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            assert resp.headers["Cache-Control"] == "no-store"
            return parse(await resp.text())

    async def scrape_text(self, headers: dict[str, str] | None = None) -> str:
        async with aiohttp.ClientSession() as s, s.get(self.url("/metrics"), headers=headers) as resp:
            assert resp.status == 200
            return await resp.text()


@pytest.fixture
async def serve(tmp_path, moto_endpoint) -> AsyncIterator[Callable]:
    runners: list[web.AppRunner] = []

    async def start(**overrides) -> Served:
        overrides.setdefault("metrics", "open")
        settings = make_settings(
            s3_endpoint=moto_endpoint,
            s3_access_key="testing",
            s3_secret_key="testing",
            data_dir=str(tmp_path / f"data{len(runners)}"),
            **overrides,
        )
        app = create_app(settings)
        runner = make_runner(app, settings)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return Served(app, runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


# -- who may read it ------------------------------------------------------------------
async def test_closed_by_default_while_auth_is_off(serve):
    gw = await serve(metrics="admin")  # the default
    async with aiohttp.ClientSession() as s, s.get(gw.url("/metrics")) as resp:
        assert resp.status == 404
        assert 'metrics = "open"' in await resp.text()


async def test_off_is_404_even_for_everyone(serve):
    gw = await serve(metrics="off")
    async with aiohttp.ClientSession() as s, s.get(gw.url("/metrics")) as resp:
        assert resp.status == 404


async def test_admins_and_their_tokens_only(serve, bucket):
    gw = await serve(metrics="admin", auth=True, login_delay=0)
    service = gw.app[keys.AUTH]
    await service.add_user("root", PASSWORD, admin=True)
    await service.add_user("reader", None)
    await service.grant("reader", Rule.parse(f"{bucket}:all"))
    admin_token, _ = await service.create_token("root", scope=[Rule.parse("no-such-bucket-here:read")])
    reader_token, _ = await service.create_token("reader")
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url("/metrics")) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
        async with s.get(gw.url("/metrics"), headers={"Authorization": f"Bearer {reader_token}"}) as resp:
            assert resp.status == 403
        # A link's query names its signer: outside a bucket's URLs it is no credential at all.
        async with s.get(gw.url("/metrics?expires=9999999999&by=root&sig=forged")) as resp:
            assert resp.status == 401
    # An admin's token, even one scoped to no real bucket, and the admin's password.
    await gw.scrape({"Authorization": f"Bearer {admin_token}"})
    await gw.scrape(basic("root", PASSWORD))


# -- what it counts -----------------------------------------------------------------------
async def test_requests_by_route_template_never_the_key(serve, bucket):
    gw = await serve()
    key = "quarterly-report-zebra-7f3a9.pdf"
    before = await gw.scrape()
    async with aiohttp.ClientSession() as s:
        async with s.put(gw.url(f"/files/{bucket}/docs/{key}"), data=b"x" * 1000) as resp:
            assert resp.status == 201
        async with s.get(gw.url(f"/files/{bucket}/docs/{key}")) as resp:
            assert resp.status == 200 and len(await resp.read()) == 1000
        async with s.get(gw.url("/no/such/route/zebra-route")) as resp:
            assert resp.status == 404
        async with s.request("PROPFIND", gw.url("/healthz")) as resp:
            assert resp.status == 405
    text = await gw.scrape_text()
    after = parse(text)
    route = "/files/{bucket}/{path}"

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("s3gate_http_requests_total", route=route, method="PUT", status="201") == 1
    assert delta("s3gate_http_requests_total", route=route, method="GET", status="200") == 1
    assert delta("s3gate_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert delta("s3gate_http_requests_total", route="unmatched", method="other", status="405") == 1
    assert delta("s3gate_http_request_duration_seconds_count", route=route, method="PUT") == 1
    assert delta("s3gate_http_received_bytes_total", route=route, method="PUT") == 1000
    assert delta("s3gate_uploads_total", outcome="completed") == 1
    assert delta("s3gate_s3_requests_total", operation="PutObject", outcome="ok") == 1
    assert delta("s3gate_s3_requests_total", operation="GetObject", outcome="ok") == 1
    for unbounded in (key, "zebra", bucket, "PROPFIND"):
        assert unbounded not in text


async def test_bytes_sent_are_the_bytes_on_the_wire(serve, bucket, s3):
    gw = await serve()
    await asyncio.to_thread(s3.put_object, Bucket=bucket, Key="k", Body=os.urandom(300_000))
    route = "/files/{bucket}/{path}"
    before = await gw.scrape()
    # A streamed download, a JSON error, a plain-text answer: each counted to its last byte, headers too.
    sent = 0
    for path in (f"/files/{bucket}/k", f"/files/{bucket}/missing", "/healthz"):
        answer = await exchange(gw.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 ")
        sent += len(answer)
    after = await gw.scrape()
    total = sum(
        value(after, "s3gate_http_sent_bytes_total", route=r, method="GET")
        - value(before, "s3gate_http_sent_bytes_total", route=r, method="GET")
        for r in (route, "/healthz")
    )
    assert total == sent


async def test_a_redirect_raised_by_the_policy_is_counted_and_still_sent(serve, bucket):
    gw = await serve(auth=True)
    before = await gw.scrape()
    answer = await exchange(
        gw.port,
        f"GET /files/{bucket}/ HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nSec-Fetch-Mode: navigate\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    head = answer.partition(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 303") and "\r\nLocation: /login?next=" in head and "X-Request-Id: " in head
    after = await gw.scrape()
    route = {"route": "/files/{bucket}/", "method": "GET"}

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("s3gate_http_requests_total", status="303", **route) == 1
    assert delta("s3gate_http_sent_bytes_total", **route) == len(answer)


async def test_uploads_in_flight_then_completed_or_aborted(serve, bucket):
    gw = await serve()
    before = await gw.scrape()
    # An upload whose body has not all arrived: in flight, and so is its request.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(f"PUT /files/{bucket}/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode() + b"x" * 10)
    await writer.drain()
    for _ in range(200):
        now = await gw.scrape()
        if value(now, "s3gate_uploads_in_flight") == value(before, "s3gate_uploads_in_flight") + 1:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the upload never showed as in flight")
    assert value(now, "s3gate_http_requests_in_flight") >= 2  # the upload and this scrape
    writer.close()  # the client goes away: aborted
    # A wrong Content-MD5: refused after the body, aborted too.
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    async with aiohttp.ClientSession() as s:
        async with s.put(gw.url(f"/files/{bucket}/bad"), data=b"data", headers={"Content-MD5": bad}) as resp:
            assert resp.status == 400
    for _ in range(200):
        after = await gw.scrape()
        if value(after, "s3gate_uploads_in_flight") == value(before, "s3gate_uploads_in_flight"):
            break
        await asyncio.sleep(0.02)
    aborted = value(after, "s3gate_uploads_total", outcome="aborted") - value(
        before, "s3gate_uploads_total", outcome="aborted"
    )
    assert aborted == 2
    assert value(after, "s3gate_uploads_total", outcome="completed") == value(
        before, "s3gate_uploads_total", outcome="completed"
    )


async def test_resumable_sessions_count_as_uploads(serve, bucket):
    """The web page uploads through resumable sessions: each counts once, when it completes,
    is cancelled or expires (a session spans requests and workers: never "in flight")."""
    from s3gate.http import resumable

    gw = await serve()
    before = await gw.scrape()
    async with aiohttp.ClientSession() as s:

        async def session(key: str) -> str:
            body = {"bucket": bucket, "key": key, "size": 3, "name": key}
            async with s.post(gw.url("/api/uploads"), json=body) as resp:
                assert resp.status == 201, await resp.text()
                sid = (await resp.json())["id"]
            async with s.put(gw.url(f"/api/uploads/{sid}/parts/1"), data=b"abc") as resp:
                assert resp.status == 200, await resp.text()
            return sid

        async with s.post(gw.url(f"/api/uploads/{await session('done.txt')}/complete")) as resp:
            assert resp.status == 201, await resp.text()
        cancelled = await session("cancelled.txt")
        async with s.delete(gw.url(f"/api/uploads/{cancelled}")) as resp:
            assert resp.status == 200, await resp.text()
        await session("left.txt")
    assert await resumable.sweep_expired(gw.app, now=2**40) == 1
    after = await gw.scrape()

    def delta(outcome: str) -> float:
        return value(after, "s3gate_uploads_total", outcome=outcome) - value(
            before, "s3gate_uploads_total", outcome=outcome
        )

    assert (delta("completed"), delta("aborted")) == (1, 2)
    assert value(after, "s3gate_uploads_in_flight") == value(before, "s3gate_uploads_in_flight")


async def test_login_failures_and_lockouts(serve, bucket):
    gw = await serve(auth=True, login_delay=0, login_max_failures=2)
    await gw.app[keys.AUTH].add_user("carol", PASSWORD, admin=True)
    before = await gw.scrape()
    async with aiohttp.ClientSession() as s:
        statuses = []
        for i in range(3):
            async with s.get(gw.url("/api/whoami"), headers=basic("carol", f"wrong {i}")) as resp:
                statuses.append(resp.status)
    assert statuses == [401, 401, 429]  # the second failure locks the name; the third is not even checked
    after = await gw.scrape()
    assert value(after, "s3gate_login_failures_total") - value(before, "s3gate_login_failures_total") == 2
    assert value(after, "s3gate_login_lockouts_total") - value(before, "s3gate_login_lockouts_total") == 1
    assert "carol" not in await gw.scrape_text()


async def test_memory_budget_in_use_and_waiting():
    metrics.BUDGET_USED.set(0)
    budget = MemoryBudget(100, observe=metrics.observe_budget)

    async def gauge(name: str) -> float:
        return value(parse((await asyncio.to_thread(metrics.render)).decode()), name)

    await budget.acquire(80)
    assert await gauge("s3gate_memory_budget_used_bytes") == 80
    waiter = asyncio.create_task(budget.acquire(50))
    while not budget.waiting:
        await asyncio.sleep(0)
    assert await gauge("s3gate_memory_budget_waiting") == 1
    budget.release(80)
    await waiter
    assert (await gauge("s3gate_memory_budget_used_bytes"), await gauge("s3gate_memory_budget_waiting")) == (50, 0)
    # A waiter that gives up leaves the count too.
    late = asyncio.create_task(budget.acquire(60))
    while not budget.waiting:
        await asyncio.sleep(0)
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert await gauge("s3gate_memory_budget_waiting") == 0


# -- the storage room's hook ----------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False], ids=["lean-path", "botocore"])
async def test_every_s3_call_is_reported_once(settings, bucket, fast):
    calls: list[tuple[str, int | None]] = []
    async with Storage.open(
        replace(settings, s3_fast_path=fast), observe=lambda op, s, st: calls.append((op, st))
    ) as st:
        await st.put(bucket, "a", b"abc", content_type="text/plain", checksum_crc32="NSRBwg==", metadata={})
        await st.head(bucket, "a")
        with pytest.raises(Exception, match="no such key"):
            await st.head(bucket, "missing")
        await st.list_page(bucket, prefix="", delimiter=None, limit=10, token=None)
    assert calls[:3] == [("PutObject", 200), ("HeadObject", 200), ("HeadObject", 404)]
    # "no such key or no such bucket?": HEAD answers carry no code, so the bucket is checked.
    assert calls[3:] == [("HeadBucket", 200), ("ListObjectsV2", 200)]


async def test_an_unreachable_store_is_reported(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    settings = make_settings(
        s3_endpoint=endpoint, s3_access_key="k", s3_secret_key="s", data_dir=str(tmp_path), s3_timeout=2
    )
    calls: list[tuple[str, int | None]] = []
    async with Storage.open(settings, observe=lambda op, s, st: calls.append((op, st))) as st:  # the lean path
        with pytest.raises(Exception, match="unreachable"):
            await st.head("b", "k")
    # botocore's calls, through the same hook, on a client that does not retry (the gateway's retries twice).
    session = get_session()
    config = AioConfig(retries={"max_attempts": 1}, connect_timeout=2)
    async with session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=config,
    ) as client:
        _watch_calls(client, lambda op, s, st: calls.append((op, st)))
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            await client.list_objects_v2(Bucket="b")
    assert calls == [("HeadObject", None), ("ListObjectsV2", None)]
    assert metrics.s3_outcome(None) == "unreachable"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


# -- many processes (gunicorn's workers) ---------------------------------------------------------
WORKER = textwrap.dedent(
    """
    from s3gate import metrics
    metrics.observe_request("/files/{bucket}/{path}", "GET", 200, 0.01, 0, 100)
    metrics.observe_s3("GetObject", 0.002, 200)
    metrics.UPLOADS_IN_FLIGHT.inc()  # and exits without finishing it, as a killed worker would
    metrics.login_failed(locked=True)
    """
)
SCRAPER = textwrap.dedent(
    """
    import sys
    from s3gate import gunicorn_conf, metrics

    class Worker:
        pid = int(sys.argv[1])

    if Worker.pid:
        gunicorn_conf.child_exit(None, Worker())  # what gunicorn's arbiter calls when a worker exits
    sys.stdout.write(metrics.render().decode())
    """
)


def test_workers_add_up_and_a_dead_workers_gauges_leave(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def run(code: str, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        return done

    workers = [subprocess.Popen([sys.executable, "-c", WORKER], env=env) for _ in range(2)]
    for w in workers:
        assert w.wait(60) == 0
    both = parse(run(SCRAPER, "0").stdout)
    assert value(both, "s3gate_http_requests_total", route="/files/{bucket}/{path}", method="GET", status="200") == 2
    assert value(both, "s3gate_http_sent_bytes_total", route="/files/{bucket}/{path}", method="GET") == 200
    assert value(both, "s3gate_http_request_duration_seconds_count", route="/files/{bucket}/{path}", method="GET") == 2
    assert value(both, "s3gate_s3_requests_total", operation="GetObject", outcome="ok") == 2
    assert value(both, "s3gate_login_failures_total") == 2
    assert value(both, "s3gate_login_lockouts_total") == 2
    assert value(both, "s3gate_uploads_in_flight") == 2

    one_dead = parse(run(SCRAPER, str(workers[0].pid)).stdout)
    assert value(one_dead, "s3gate_uploads_in_flight") == 1  # its live gauge left with it
    # Its counters stay: totals never go backwards when a worker dies.
    assert (
        value(one_dead, "s3gate_http_requests_total", route="/files/{bucket}/{path}", method="GET", status="200") == 2
    )
    assert value(one_dead, "s3gate_login_failures_total") == 2
