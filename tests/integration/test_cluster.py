"""Two gateways behind one nginx, one PostgreSQL, one SeaweedFS: every piece of state is shared (issue 12).

The cluster starts once for the module, each part the production way:

- PostgreSQL: the session's throwaway server (tests/postgres.py), one fresh database;
- SeaweedFS: the integration suite's ``weed mini``;
- instances A and B: ``s3gate serve`` each (gunicorn, two aiohttp workers),
  each with its own data directory, the same ``users_db`` URL, the same
  ``secret_file`` and the same S3 endpoint and credentials;
- nginx: the shipped site (config/nginx/s3gate.conf, TLS) rendered with an
  upstream of both instances, round-robin.

Tests call A and B directly by port where they must know which instance
answers, and go through nginx where a client would. Where it matters, a
request goes to every worker of every instance (one connection pinned to
each worker), so nothing passes by luck of which worker answered. The
sweepers run every second (``upload_sweep_seconds``). Two tests kill an
instance (SIGKILL to its gunicorn master and workers: a machine gone); the
``cluster`` fixture starts it again for any later test, and the last test
leaves its victim down.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from s3gate.embedded import free_port
from s3gate.private import write_private
from s3gate.storage.journal import process_identity
from tests.integration.helpers import (
    PART,
    MiB,
    curl,
    eventually,
    random_bytes,
    read_response,
    request_head,
    run,
    sha256,
)
from tests.integration.test_nginx import nginx_binary, write_config
from tests.integration.test_processes import child_env
from tests.integration.test_proven_workers import basic, owner

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent  # the virtualenv's bin: s3gate, gunicorn
PASSWORD = "correct horse battery staple"
CLIENT = "192.0.2.10"  # a client's address, as nginx would forward it (127.0.0.1 is a trusted proxy)
ATTACKER = "203.0.113.66"
MAX_FAILURES = 3


# -- the cluster ------------------------------------------------------------------------------
@dataclass
class Instance:
    """One gateway: `s3gate serve` (which runs gunicorn in a session of its own) on a port of its own."""

    name: str
    port: int
    data_dir: Path
    env: dict[str, str] = field(repr=False)
    serve: subprocess.Popen | None = None
    log: Path | None = None

    def __post_init__(self) -> None:
        self.env = {**self.env, "S3GATE_PORT": str(self.port), "S3GATE_DATA_DIR": str(self.data_dir)}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> None:
        self.log = self.data_dir.parent / f"{self.name}-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as out:
            self.serve = subprocess.Popen(
                [str(BIN / "s3gate"), "serve"], env=self.env, cwd=self.data_dir.parent,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.serve is not None and self.serve.poll() is None, f"{self.name} exited:\n{self.log_tail()}"
            probe = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", self.url("/readyz")],
                capture_output=True, text=True,
            )  # fmt: skip
            if probe.stdout == "200" and len(self.workers) == int(self.env["S3GATE_WORKERS"]):
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {timeout:.0f} s:\n{self.log_tail()}")

    @property
    def gunicorn(self) -> psutil.Process:
        assert self.serve is not None
        (master,) = psutil.Process(self.serve.pid).children()
        return master

    @property
    def workers(self) -> list[int]:
        try:
            return [p.pid for p in self.gunicorn.children()]
        except (ValueError, psutil.NoSuchProcess):
            return []

    def downloads(self) -> int:
        """Connections this instance's workers are serving now (nginx opens one per request)."""
        count = 0
        for pid in self.workers:
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            count += sum(1 for c in conns if c.laddr.port == self.port and c.raddr and c.status == "ESTABLISHED")
        return count

    def crash(self) -> None:
        """SIGKILL the gunicorn master and its workers at once (a machine or container gone); serve then exits."""
        assert self.serve is not None
        os.killpg(self.gunicorn.pid, signal.SIGKILL)
        self.serve.wait(30)

    def terminate(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            self.serve.terminate()  # serve stops gunicorn (SIGTERM), which stops its workers

    def stop(self) -> None:
        if self.serve is None or self.serve.poll() is not None:
            return
        self.terminate()
        try:
            self.serve.wait(30)
        except subprocess.TimeoutExpired:
            for p in psutil.Process(self.serve.pid).children(recursive=True):
                p.kill()
            self.serve.kill()
            self.serve.wait()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log and self.log.exists() else ""

    def log_text(self) -> str:
        """Everything every run of this instance logged."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.data_dir.parent.glob(f"{self.name}-*.log")))


@dataclass
class Cluster:
    a: Instance
    b: Instance
    nginx: str  # https://127.0.0.1:PORT
    cacert: Path  # nginx's certificate (127.0.0.1 in its SAN)
    bucket: str
    root: Path
    env: dict[str, str] = field(repr=False)

    @property
    def instances(self) -> tuple[Instance, Instance]:
        return self.a, self.b


def add_users(env: dict[str, str], bucket: str) -> None:
    """alice may do everything in the bucket; carol only signs in (the target of the password guessing).

    Through the auth service, in one process (four `s3gate users` commands cost seconds of start-up;
    tests/auth/test_cli.py runs those commands against PostgreSQL).
    """
    from s3gate import settings as settings_mod
    from s3gate.auth.bootstrap import run_sync
    from s3gate.auth.config import check
    from s3gate.auth.rules import Rule
    from s3gate.auth.service import running_service

    async def add() -> None:
        config = check(settings_mod.load(environ=env, use_file=False))
        async with running_service(config) as service:
            for name in ("alice", "carol"):
                await service.add_user(name, PASSWORD)
            await service.grant("alice", Rule.parse(f"{bucket}:all"))

    run_sync(add())


def start_nginx(root: Path, upstreams: list[int]) -> tuple[subprocess.Popen, str]:
    """Debian's nginx with the shipped site (TLS, ROOT/cert.pem) in front of an upstream of these ports."""
    _, https_port = write_config(root, upstreams)
    stderr = open(root / "stderr.log", "wb")  # what nginx says before its error_log is open
    proc = subprocess.Popen(
        [nginx_binary(), "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=stderr,
    )  # fmt: skip
    stderr.close()
    https = f"https://127.0.0.1:{https_port}"
    for _ in range(100):
        probe = subprocess.run(
            ["curl", "-s", "--cacert", str(root / "cert.pem"), "-o", "/dev/null", "-w", "%{http_code}", f"{https}/healthz"],
            capture_output=True, text=True,
        )  # fmt: skip
        if probe.stdout == "200" or proc.poll() is not None:
            break
        time.sleep(0.1)
    logs = [root / "stderr.log", root / "error.log"]
    assert probe.stdout == "200", "\n".join(p.read_text() for p in logs if p.exists())
    return proc, https


@pytest.fixture(scope="module")
def whole_cluster(postgres, seaweed, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    secret_file = root / "cluster.secret"
    write_private(secret_file, (secrets.token_hex(32) + "\n").encode())  # what every instance is given
    bucket = f"cluster-{secrets.token_hex(4)}"
    seaweed.client().create_bucket(Bucket=bucket)
    env = child_env(
        S3GATE_USERS_DB=postgres.create_database(),
        S3GATE_SECRET_FILE=str(secret_file),
        S3GATE_S3_ENDPOINT=seaweed.endpoint,
        S3GATE_S3_ACCESS_KEY=seaweed.credentials.access_key,
        S3GATE_S3_SECRET_KEY=seaweed.credentials.secret_key,
        S3GATE_AUTH="1",
        S3GATE_WORKERS="2",
        S3GATE_TRUSTED_PROXIES="127.0.0.1",  # nginx, and the tests standing in for it
        S3GATE_LINK_MODE="gateway",  # the store is on loopback: links point at the gateway
        S3GATE_LOGIN_DELAY="0",
        S3GATE_LOGIN_MAX_FAILURES=str(MAX_FAILURES),
        S3GATE_PART_SIZE="5MiB",
        S3GATE_UPLOAD_MEMORY_BUDGET="64MiB",
        S3GATE_SHUTDOWN_TIMEOUT="2",
        S3GATE_GRACEFUL_TIMEOUT="5",
        S3GATE_AUDIT_LOG="-",
        S3GATE_UPLOAD_SWEEP_SECONDS="1",  # the sweepers' rounds (600 s by default)
        # gunicorn closes a keep-alive connection idle for 2 s; the tests' connections pinned to one
        # worker each wait longer than that between requests while argon2 checks a wrong password.
        GUNICORN_CMD_ARGS="--keep-alive 60",
    )
    a, b = (Instance(name, free_port(), root / f"data-{name}", env) for name in ("a", "b"))
    add_users(a.env, bucket)
    nginx = None
    try:
        for instance in (a, b):
            instance.start()
        for instance in (a, b):
            instance.wait_ready()
        nginx, https = start_nginx(root / "nginx", [a.port, b.port])
        yield Cluster(a, b, https, root / "nginx" / "cert.pem", bucket, root, env)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        for instance in (a, b):
            instance.terminate()
        for instance in (a, b):
            instance.stop()
        shutil.rmtree(root / "nginx", ignore_errors=True)


@pytest.fixture
def cluster(whole_cluster):
    """The cluster with both instances up: one a test crashed is started again (same port, data dir,
    database and secret) when a later test needs it."""
    down = [i for i in whole_cluster.instances if i.serve is None or i.serve.poll() is not None]
    for instance in down:
        instance.start()
    for instance in down:
        instance.wait_ready()
    return whole_cluster


# -- one connection to each worker ----------------------------------------------------------------
class WorkerConn:
    """A keep-alive connection that one known worker of one instance accepted."""

    def __init__(self, instance: Instance, pid: int, reader, writer):
        self.instance, self.pid, self.reader, self.writer = instance, pid, reader, writer

    def __repr__(self) -> str:
        return f"<{self.instance.name}:{self.pid}>"

    async def call(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(request_head(method, path, self.instance.port, {"Content-Length": "0", **headers}))
        await self.writer.drain()
        return await read_response(self.reader)

    async def whoami(self, headers: dict[str, str], addr: str = CLIENT) -> tuple[int, Any]:
        status, _, body = await self.call("GET", "/api/whoami", {**headers, "X-Forwarded-For": addr})
        return status, json.loads(body) if status == 200 else None


@pytest.fixture
async def each_worker(cluster):
    """Four connections: one to each worker of A and of B."""
    found: list[WorkerConn] = []
    spare = []
    for instance in cluster.instances:
        pids = instance.workers
        mine: dict[int, WorkerConn] = {}
        for _ in range(200):
            reader, writer = await asyncio.open_connection("127.0.0.1", instance.port)
            conn = WorkerConn(instance, 0, reader, writer)
            await conn.call("GET", "/healthz", {})  # answered: a worker has accepted it
            pid = owner(pids, instance.port, writer.get_extra_info("sockname")[1])
            if pid is not None and pid not in mine:
                conn.pid = pid
                mine[pid] = conn
            else:
                spare.append(writer)
            if len(mine) == len(pids):
                break
        assert len(mine) == 2, f"could not reach both workers of {instance.name}"
        found += mine.values()
    for w in spare:
        w.close()
    yield found
    for c in found:
        c.writer.close()


# -- state shared through PostgreSQL and the secret file --------------------------------------------
async def test_a_browser_session_made_on_one_instance_works_on_the_other(cluster, each_worker, tmp_path):
    login = await curl(
        "-X", "POST", cluster.a.url("/login"), "-H", "Content-Type: application/json",
        "-d", json.dumps({"username": "alice", "password": PASSWORD}), "-c", tmp_path / "jar", tmp=tmp_path,
    )  # fmt: skip
    assert login.status == 200, login.text
    session = next(
        line.split("\t")[-1] for line in (tmp_path / "jar").read_text().splitlines() if "s3gate_session" in line
    )
    cookie = {"Cookie": f"s3gate_session={session}"}
    for conn in each_worker:
        status, who = await conn.whoami(cookie)
        assert (status, who["user"], who["via"]) == (200, "alice", "session"), conn

    logout = await curl("-X", "POST", cluster.b.url("/logout"), "-b", tmp_path / "jar", tmp=tmp_path)
    assert logout.status == 303, logout.text
    for conn in each_worker:  # ended on B: at once on every worker of A too
        status, who = await conn.whoami(cookie)
        assert status == 401 or who["via"] != "session", (conn, status, who)


async def test_a_token_revoked_on_one_instance_is_refused_on_the_other_at_once(cluster, each_worker, tmp_path):
    made = await curl(
        "-u", f"alice:{PASSWORD}", "-X", "POST", cluster.a.url("/api/tokens"), "-H", "Content-Type: application/json",
        "-d", json.dumps({"expires": "1h", "label": "cluster"}), tmp=tmp_path,
    )  # fmt: skip
    assert made.status == 201, made.text
    token = made.json()
    bearer = {"Authorization": f"Bearer {token['token']}"}
    for conn in each_worker:  # every worker has seen it work (nothing to warm up afterwards)
        status, who = await conn.whoami(bearer)
        assert (status, who["user"], who["via"]) == (200, "alice", "token"), conn

    revoked = await curl(
        "-u", f"alice:{PASSWORD}", "-X", "DELETE", cluster.b.url(f"/api/tokens/{token['id']}"), tmp=tmp_path
    )
    assert revoked.status == 200, revoked.text
    # The very next request on each worker of both instances: refused.
    assert [(await conn.whoami(bearer))[0] for conn in each_worker] == [401] * 4


async def test_failed_logins_count_across_instances_and_a_proven_client_keeps_working(cluster, each_worker):
    right = {"Authorization": basic("carol", PASSWORD)}
    first = each_worker[0]
    assert (await first.whoami(right))[0] == 200  # carol proves her password on one worker of A only

    # Someone guesses from another address, spreading the guesses over every worker of both instances:
    # the failures count in one place, so the name locks after MAX_FAILURES whichever worker answered.
    guesses = [
        (await each_worker[i % 4].whoami({"Authorization": basic("carol", f"guess {i}")}, ATTACKER))[0]
        for i in range(MAX_FAILURES + 3)
    ]
    assert guesses == [401] * MAX_FAILURES + [429] * 3, guesses
    # The proven client keeps working everywhere, though three of these workers never verified her
    # password themselves: the proof is in the database, keyed by the key derived from the shared secret.
    assert [(await conn.whoami(right))[0] for conn in each_worker] == [200] * 4
    # An address that never proved the password stays locked out, on both instances.
    assert [(await conn.whoami(right, "192.0.2.11"))[0] for conn in each_worker] == [429] * 4


async def test_a_link_signed_by_one_instance_downloads_from_the_other(cluster, store, tmp_path):
    data = random_bytes(MiB + 17)
    await store.put(cluster.bucket, "links/report.bin", data)
    minted = await curl(
        "-u", f"alice:{PASSWORD}", cluster.a.url(f"/downloads3/{cluster.bucket}/links/report.bin"), tmp=tmp_path
    )
    assert minted.status == 302, minted.text
    link = minted.headers["location"]
    assert link.startswith(cluster.a.base + "/files/") and "sig=" in link, link
    on_b = cluster.b.base + link.removeprefix(cluster.a.base)
    got = await curl(on_b, tmp=tmp_path)  # no credentials: the link is the credential
    assert got.status == 200, got.text
    assert sha256(got.body) == sha256(data)
    tampered = await curl(on_b.replace("report.bin", "other.bin"), tmp=tmp_path)
    assert tampered.status == 403


async def test_a_resumable_upload_started_on_one_instance_completes_on_the_other(cluster, store, tmp_path):
    data = random_bytes(5 * MiB + 4321)
    created = await curl(
        "-u", f"alice:{PASSWORD}", "-X", "POST", cluster.a.url("/api/uploads"), "-H", "Content-Type: application/json",
        "-d", json.dumps({"bucket": cluster.bucket, "key": "resumed/video.bin", "size": len(data), "name": "video.bin"}),
        tmp=tmp_path,
    )  # fmt: skip
    assert created.status == 201, created.text
    session = created.json()
    assert (session["part_size"], session["parts"]) == (5 * MiB, 2)
    grant = ["-H", f"X-Upload-Grant: {session['grant']}"]  # no login: the session's grant, checked by both
    parts = [data[: 5 * MiB], data[5 * MiB :]]
    for number, (instance, part) in enumerate(zip(cluster.instances, parts, strict=True), start=1):
        path = tmp_path / f"part{number}"
        path.write_bytes(part)
        sent = await curl(*grant, "-T", path, instance.url(f"{session['url']}/parts/{number}"), tmp=tmp_path)
        assert sent.status == 200, (instance.name, sent.text)
    status = await curl(*grant, cluster.b.url(session["url"]), tmp=tmp_path)
    assert status.status == 200, status.text
    assert ([p["part"] for p in status.json()["done"]], status.json()["missing"]) == ([1, 2], []), status.text
    done = await curl(*grant, "-X", "POST", cluster.b.url(session["url"] + "/complete"), tmp=tmp_path)
    assert done.status == 201, done.text
    assert sha256(await store.get(cluster.bucket, "resumed/video.bin")) == sha256(data)


# -- the upload sweepers ---------------------------------------------------------------------------
async def journal_rows(cluster: Cluster, key: str) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(cluster.env["S3GATE_USERS_DB"]) as db:
        cur = await db.execute("SELECT upload_id, owner FROM upload_journal WHERE object_key = %s", (key,))
        return await cur.fetchall()


async def last_rounds(cluster: Cluster, owners: list[str]) -> list[float]:
    """When each of these workers last began a sweeper round (each round starts by saying it is alive)."""
    async with await psycopg.AsyncConnection.connect(cluster.env["S3GATE_USERS_DB"]) as db:
        cur = await db.execute("SELECT owner, seen_at FROM gateway_workers")  # seen_at: each round's start
        seen = dict(await cur.fetchall())
    return [seen.get(o, 0.0) for o in owners]


async def test_an_upload_left_by_a_dead_instance_is_aborted_once_by_the_other(cluster, store):
    """The sweepers of every worker of both instances run every second, taking turns through the database."""
    victim, survivor = cluster.a, cluster.b
    key = "sweeper/unfinished.bin"
    reader, writer = await asyncio.open_connection("127.0.0.1", victim.port)
    head = {"Authorization": basic("alice", PASSWORD), "Content-Length": str(6 * PART)}
    writer.write(request_head("PUT", f"/files/{cluster.bucket}/{key}", victim.port, head))
    writer.write(random_bytes(PART + PART // 2))
    await writer.drain()

    async def one_part_in_s3() -> bool:
        return await store.parts_done(cluster.bucket, key) >= 1

    await eventually(one_part_in_s3, 20, "the first part of the upload in S3")
    ((upload_id, owner_id),) = await journal_rows(cluster, key)
    assert [u["UploadId"] for u in await store.open_uploads(cluster.bucket) if u["Key"] == key] == [upload_id]

    await asyncio.to_thread(victim.crash)  # mid-upload: nobody on A is left to abort it
    writer.close()

    async def aborted() -> bool:
        return not await journal_rows(cluster, key) and not [
            u for u in await store.open_uploads(cluster.bucket) if u["Key"] == key
        ]

    await eventually(aborted, 20, "the survivor's sweeper to abort the dead instance's upload")
    assert not await store.exists(cluster.bucket, key)
    # Let every sweeper of the survivor run whole rounds after that: none aborts it again.
    since = time.time()
    owners = [await asyncio.to_thread(process_identity, pid) for pid in survivor.workers]  # reads /proc

    async def two_more_rounds_each() -> bool:
        return min(await last_rounds(cluster, owners)) > since + 1

    await eventually(two_more_rounds_each, 20, "two more sweeper rounds on every worker of the survivor")
    line = f"aborted orphaned multipart upload of {cluster.bucket}/{key}"
    assert survivor.log_text().count(line) == 1, survivor.log_tail()
    assert line not in victim.log_text()
    assert f"upload {cluster.bucket}/{key}: abort failed" not in survivor.log_text()


# -- an instance lost mid-download -----------------------------------------------------------------
async def downloading(instances, before: dict[str, int]) -> str | None:
    """The instance that took a new download since ``before`` (connection counts), if one did."""
    for instance in instances:
        if instance.downloads() > before[instance.name]:
            return instance.name
    return None


async def test_an_instance_stopped_mid_download_curl_and_wget_resume_on_the_survivor(cluster, store, tmp_path):
    data = random_bytes(32 * MiB)
    await store.put(cluster.bucket, "big/film.bin", data)
    url = f"{cluster.nginx}/files/{cluster.bucket}/big/film.bin"
    auth = ["-u", f"alice:{PASSWORD}"]
    curl_out, wget_dir = tmp_path / "film.bin", tmp_path / "wget"
    wget_dir.mkdir()
    wget = [
        "wget",
        "--user",
        "alice",
        "--password",
        PASSWORD,
        "--ca-certificate",
        str(cluster.cacert),
        "-P",
        str(wget_dir),
    ]

    def counts() -> dict[str, int]:
        return {i.name: i.downloads() for i in cluster.instances}

    # Both clients slowed down, so both are still reading when the instance goes.
    before = counts()
    curl_task = asyncio.create_task(
        run("curl", "-sS", "--fail", "--cacert", cluster.cacert, *auth, "--limit-rate", "2M", "-o", curl_out, url)
    )
    await eventually(lambda: downloading(cluster.instances, before), 20, "curl's download to start")
    victim_name = await downloading(cluster.instances, before)
    victim = cluster.a if victim_name == "a" else cluster.b
    # wget must be served by the same instance: round-robin sends the next request to the other
    # one, so a wget that landed there is stopped and started again until it lands on the victim.
    for _ in range(4):
        before = counts()
        wget_task = asyncio.create_task(run(*wget, "-q", "--tries=1", "--limit-rate=2m", url))
        await eventually(lambda b=before: downloading(cluster.instances, b), 20, "wget's download to start")
        if await downloading([victim], before):
            break
        wget_task.cancel()  # run() kills it
        with pytest.raises(asyncio.CancelledError):
            await wget_task
        (wget_dir / "film.bin").unlink(missing_ok=True)
    else:
        raise AssertionError("wget never reached the instance curl is reading from")

    async def both_have_bytes() -> bool:
        wget_file = wget_dir / "film.bin"
        return (
            curl_out.exists()
            and curl_out.stat().st_size > MiB
            and wget_file.exists()
            and wget_file.stat().st_size > MiB
        )

    await eventually(both_have_bytes, 20, "both downloads under way")
    await asyncio.to_thread(victim.crash)
    cut_curl, cut_wget = await curl_task, await wget_task
    assert cut_curl.rc != 0 and cut_wget.rc != 0, (cut_curl, cut_wget)
    assert 0 < curl_out.stat().st_size < len(data) and 0 < (wget_dir / "film.bin").stat().st_size < len(data)

    # Through the same nginx: the dead instance refuses the connection, nginx passes the request to
    # the survivor, which sends the rest (206) of the same object.
    resumed = await run(
        "curl", "-sS", "--fail", "--cacert", cluster.cacert, *auth, "-C", "-", "-o", curl_out,
        "-w", "%{http_code}", url,
    )  # fmt: skip
    assert resumed.rc == 0 and resumed.text == "206", resumed.errtext
    again = await run(*wget, "-c", "-S", url)
    assert again.rc == 0, again.errtext
    assert "206 Partial Content" in again.errtext
    assert sha256(curl_out.read_bytes()) == sha256(data)
    assert sha256((wget_dir / "film.bin").read_bytes()) == sha256(data)
