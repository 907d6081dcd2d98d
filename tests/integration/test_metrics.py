"""/metrics from the real `s3gate serve` with two gunicorn workers: the counts add up, and a killed worker's stay.

Known traffic from curl (uploads, downloads, 404s, failed logins; every
request on a new connection), then requests sent on one connection held to
each worker (found with psutil, as tests/integration/test_proven_workers.py
does), so both workers surely counted some. A scrape, answered by either
worker, must give the exact totals. Then one worker is SIGKILLed while an
upload it serves is in flight: gunicorn's child_exit hook (mark_process_dead)
drops its live gauges (uploads in flight back to 0), while its counters stay.
The gateway logs in JSON meanwhile: every line on its standard error parses.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from s3gate.embedded import free_port

from .helpers import curl, eventually, read_response, request_head, run
from .test_processes import BIN, Running, child_env, processes, wait_ready  # noqa: F401 (processes: a fixture)
from .test_proven_workers import connection_to_each_worker

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
FILES = "/files/{bucket}/{path}"


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Scrape:
    def __init__(self, text: str):
        self.text = text
        self.samples = parse(text)

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


async def start(processes, tmp_path: Path, seaweed) -> tuple[Running, Path]:  # noqa: F811
    port = free_port()
    err = tmp_path / "serve.err"
    env = child_env(
        S3GATE_S3_ENDPOINT=seaweed.endpoint,
        S3GATE_S3_ACCESS_KEY=seaweed.credentials.access_key,
        S3GATE_S3_SECRET_KEY=seaweed.credentials.secret_key,
        S3GATE_PORT=str(port),
        S3GATE_DATA_DIR=str(tmp_path / "data"),
        S3GATE_WORKERS="2",
        S3GATE_ADMIN_PASSWORD=PASSWORD,
        S3GATE_LOGIN_DELAY="0",
        S3GATE_LOG_FORMAT="json",
    )
    with open(tmp_path / "serve.out", "wb") as out, open(err, "wb") as errors:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "s3gate"), "serve",
            cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=errors,
        )  # fmt: skip
    running = Running(proc, port, err, stop_signal=signal.SIGINT)
    processes.append(running)
    await wait_ready(running, timeout=60)
    running.children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    return running, tmp_path / "data"


def gunicorn_master(gw: Running) -> psutil.Process:
    (master,) = psutil.Process(gw.pid).children()
    return master


async def test_metrics_add_up_over_two_workers_and_outlive_a_killed_one(processes, seaweed, bucket, tmp_path):  # noqa: F811
    gw, data = await start(processes, tmp_path, seaweed)
    master = gunicorn_master(gw)
    gw.children = [w.pid for w in master.children()]
    assert len(gw.children) == 2

    # Tokens: the admin's for traffic, the admin's scoped to no real bucket for Prometheus, and bob's.
    res = await run(BIN / "s3gate", "users", "add", "bob", "--no-password", env=child_env(S3GATE_DATA_DIR=str(data)))
    assert res.rc == 0, res.errtext

    async def token(**body) -> str:
        r = await curl(
            "-u", f"admin:{PASSWORD}", "-H", "Content-Type: application/json", "-d", json.dumps(body),
            gw.url("/api/tokens"), tmp=tmp_path,
        )  # fmt: skip
        assert r.status == 201, r.text
        return r.json()["token"]

    admin = await token(label="traffic")
    prometheus = await token(label="prometheus", scope=["no-such-bucket-for-metrics:read"])
    bob = await token(user="bob", label="bob")

    async def scrape() -> Scrape:
        r = await curl("-H", f"Authorization: Bearer {prometheus}", gw.url("/metrics"), tmp=tmp_path)
        assert r.status == 200, r.text
        return Scrape(r.text)

    # Who may read it.
    assert (await curl(gw.url("/metrics"), tmp=tmp_path)).status == 401
    assert (await curl("-H", f"Authorization: Bearer {bob}", gw.url("/metrics"), tmp=tmp_path)).status == 403

    # -- known traffic from curl, one connection per request ----------------------------------------
    before = await scrape()
    sizes = [1000 + 37 * i for i in range(20)]
    args = []
    for i, size in enumerate(sizes):
        src = tmp_path / f"up{i}"
        src.write_bytes(bytes([i]) * size)
        args += ["-T", str(src), "-o", "/dev/null", gw.url(f"/files/{bucket}/zebra-secret-plan-{i}.bin")]
    common = ["-sS", "-H", f"Authorization: Bearer {admin}", "-H", "Connection: close"]
    write_out = ["-w", "%{http_code} %{size_header} %{size_download}\\n"]
    up = await run("curl", *common, *write_out, *args)
    assert up.text.split() == ["201", *up.text.split()[1:]] and up.text.count("201 ") == 20, up.text
    args = []
    for i in range(30):
        args += ["-o", "/dev/null", gw.url(f"/files/{bucket}/zebra-secret-plan-{i % 20}.bin")]
    for i in range(5):
        args += ["-o", "/dev/null", gw.url(f"/files/{bucket}/zebra-missing-{i}.bin")]
    for _ in range(3):
        args += ["-o", "/dev/null", gw.url("/zebra-no-such-route")]
    down = await run("curl", *common, *write_out, *args)
    answers = [line.split() for line in down.text.splitlines()]
    assert [a[0] for a in answers] == ["200"] * 30 + ["404"] * 8, down.text
    wire = sum(int(a[1]) + int(a[2]) for a in answers[:30])
    for i in range(3):
        r = await curl("-u", f"admin:zebra-guess-{i}", gw.url("/api/whoami"), tmp=tmp_path)
        assert r.status == 401
    after = await scrape()

    def delta(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert delta("s3gate_http_requests_total", route=FILES, method="PUT", status="201") == 20
    assert delta("s3gate_http_requests_total", route=FILES, method="GET", status="200") == 30
    assert delta("s3gate_http_requests_total", route=FILES, method="GET", status="404") == 5
    assert delta("s3gate_http_requests_total", route="unmatched", method="GET", status="404") == 3
    assert delta("s3gate_http_request_duration_seconds_count", route=FILES, method="GET") == 35
    assert delta("s3gate_http_received_bytes_total", route=FILES, method="PUT") == sum(sizes)
    assert delta("s3gate_http_sent_bytes_total", route=FILES, method="GET") >= wire  # + the five 404s
    assert delta("s3gate_uploads_total", outcome="completed") == 20
    assert delta("s3gate_s3_requests_total", operation="PutObject", outcome="ok") == 20
    assert delta("s3gate_s3_requests_total", operation="GetObject", outcome="ok") == 30
    assert delta("s3gate_s3_requests_total", operation="GetObject", outcome="4xx") == 5
    assert delta("s3gate_login_failures_total") == 3
    assert after("s3gate_memory_budget_bytes") == 2 * 256 * 1024 * 1024  # both workers' budgets
    for unbounded in ("zebra", bucket, "bob"):
        assert unbounded not in after.text

    # -- a held connection to each worker: both count, one scrape adds them up -------------------------
    conns = await connection_to_each_worker(gw)
    (pid_a, a), (pid_b, b) = conns.items()
    before = await scrape()
    for conn, n in ((a, 7), (b, 5)):
        for _ in range(n):
            conn.writer.write(request_head("GET", "/healthz", gw.port, {}))
            await conn.writer.drain()
            assert (await read_response(conn.reader))[0] == 200
    mid = await scrape()
    healthz = {"route": "/healthz", "method": "GET", "status": "200"}
    assert mid("s3gate_http_requests_total", **healthz) - before("s3gate_http_requests_total", **healthz) == 12

    # -- an upload in flight on worker A, then A is killed ---------------------------------------------
    head = request_head("PUT", f"/files/{bucket}/zebra-held", gw.port, {"Authorization": f"Bearer {admin}"})
    a.writer.write(head.replace(b"\r\n\r\n", b"\r\nContent-Length: 1000\r\n\r\n", 1) + b"x" * 10)
    await a.writer.drain()

    async def held() -> bool:
        return (await scrape())("s3gate_uploads_in_flight") == 1

    await eventually(held, what="the held upload to show as in flight")
    psutil.Process(pid_a).send_signal(signal.SIGKILL)

    async def replaced() -> bool:
        pids = [w.pid for w in master.children()]
        return pid_a not in pids and len(pids) == 2

    # gunicorn reaps the worker (calling child_exit) before it starts the next one.
    await eventually(replaced, what="gunicorn to replace the killed worker")
    for w in conns.values():
        w.writer.close()
    final = await scrape()
    assert final("s3gate_uploads_in_flight") == 0
    # The dead worker's 7 are still counted: totals never go backwards.
    assert final("s3gate_http_requests_total", **healthz) - before("s3gate_http_requests_total", **healthz) == 12
    assert final("s3gate_uploads_total", outcome="completed") == after("s3gate_uploads_total", outcome="completed")
    assert final("s3gate_login_failures_total") == after("s3gate_login_failures_total")

    # -- the logs: JSON lines only, the access log's fields among them ----------------------------------
    lines = [line for line in (tmp_path / "serve.err").read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # fails on any line that is not one JSON object
    puts = [e for e in entries if e.get("logger") == "s3gate.access" and e.get("method") == "PUT"]
    assert len([e for e in puts if e["route"] == FILES and e["status"] == 201]) == 20
    assert {e["user"] for e in puts} == {"admin"}
    assert any(e.get("logger") == "gunicorn.error" and "SIGKILL" in e.get("message", "") for e in entries)
    assert PASSWORD not in "\n".join(lines) and admin not in "\n".join(lines)
