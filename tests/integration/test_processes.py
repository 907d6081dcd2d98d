"""The gateway as production runs it: gunicorn + aiohttp's worker, and `s3gate serve` as run.sh starts it.

- Memory stays bounded under concurrent uploads (the worker's VmRSS, sampled from /proc).
- SIGTERM: uploads in flight are aborted (nothing left in S3), downloads in flight finish.
- `s3gate serve` with the embedded SeaweedFS: up, upload, download, Ctrl-C, restart sees the data.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest

from s3gate.embedded import _low_port, free_port
from tests.integration.helpers import (
    PART,
    MiB,
    eventually,
    random_bytes,
    read_response,
    request_head,
    run,
    sha256,
    sha256_file,
)

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent  # the virtualenv's bin: gunicorn, s3gate, weed


def child_env(**settings: str) -> dict[str, str]:
    """The test's environment without any S3GATE_* of its own, plus these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3GATE_")}
    env.update(settings)
    return env


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class Running:
    proc: asyncio.subprocess.Process
    port: int
    log: Path
    stop_signal: int = signal.SIGTERM
    children: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@pytest.fixture
async def processes():
    """Processes a test starts; whatever is still running at the end is stopped (by pid)."""
    started: list[Running] = []
    yield started
    for r in started:
        pids = [r.pid, *r.children]
        if r.proc.returncode is None:
            r.proc.send_signal(r.stop_signal)
            try:
                await asyncio.wait_for(r.proc.wait(), 20)
            except TimeoutError:
                pass
        for pid in pids:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        if r.proc.returncode is None:
            await r.proc.wait()


async def wait_ready(r: Running, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if r.proc.returncode is not None:
                raise AssertionError(f"exited with {r.proc.returncode}:\n{r.log_tail()}")
            try:
                async with session.get(r.url("/readyz"), timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"not ready within {timeout:.0f} s:\n{r.log_tail()}")


async def start_gunicorn(
    processes, seaweed, tmp_path: Path, graceful_timeout: int = 30, workers: int = 1, **settings: str
) -> Running:
    port = free_port()
    log = tmp_path / f"gunicorn-{port}.log"
    env = child_env(
        S3GATE_S3_ENDPOINT=seaweed.endpoint,
        S3GATE_S3_ACCESS_KEY=seaweed.credentials.access_key,
        S3GATE_S3_SECRET_KEY=seaweed.credentials.secret_key,
        S3GATE_DATA_DIR=str(tmp_path / "gateway-data"),
        S3GATE_GRACEFUL_TIMEOUT=str(graceful_timeout),
        **{"S3GATE_AUTH": "0", **settings},  # auth off unless a test turns it on
    )
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "gunicorn"), "s3gate.app:app_factory",
            "--worker-class", "aiohttp.GunicornWebWorker",
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers),
            "--graceful-timeout", str(graceful_timeout),
            "--no-control-socket",
            cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    running = Running(proc, port, log)
    processes.append(running)
    await wait_ready(running)
    children = psutil.Process(proc.pid).children()
    assert len(children) == workers, children
    running.children = [c.pid for c in children]
    return running


# -- memory --------------------------------------------------------------------
class RssSampler(threading.Thread):
    """Samples a process's VmRSS every 50 ms in a thread (the test's loop is busy uploading)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, vm_rss(self.pid))
                self.samples += 1
            except (OSError, RuntimeError):
                return
            self._halt.wait(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join()


UPLOADS = 8
UPLOAD_SIZE = 64 * MiB
BUDGET = 64 * MiB  # the README's promise: a worker stays within baseline + budget


async def steady_rss(pid: int, timeout: float = 10.0) -> int:
    """The process's RSS once it has settled: two readings 100 ms apart within 1 MiB."""
    deadline = time.monotonic() + timeout
    last = vm_rss(pid)
    while True:
        await asyncio.sleep(0.1)
        now = vm_rss(pid)
        if abs(now - last) < MiB:
            return now
        assert time.monotonic() < deadline, f"RSS of {pid} still moving ({last} -> {now})"
        last = now


async def test_memory_stays_bounded_under_concurrent_uploads(processes, seaweed, store, bucket, tmp_path):
    gw = await start_gunicorn(
        processes, seaweed, tmp_path,
        S3GATE_UPLOAD_MEMORY_BUDGET="64MiB", S3GATE_PART_SIZE="8MiB", S3GATE_PARTS_IN_FLIGHT="2",
    )  # fmt: skip
    worker = gw.children[0]
    pool = [random_bytes(MiB) for _ in range(4)]

    def chunk(i: int) -> bytes:
        return pool[i % len(pool)]

    expected = hashlib.sha256(b"".join(chunk(i) for i in range(UPLOAD_SIZE // MiB))).hexdigest()

    async def body():
        for i in range(UPLOAD_SIZE // MiB):
            yield chunk(i)

    async with aiohttp.ClientSession() as session:

        async def put(key: str, gen) -> tuple[int, dict]:
            async with session.put(
                gw.url(f"/files/{bucket}/{key}"), data=gen, headers={"Content-Length": str(UPLOAD_SIZE)}
            ) as resp:
                return resp.status, await resp.json()

        # Warm up (S3 client, connection pool, first multipart) before taking the baseline.
        status, info = await put("warmup.bin", body())
        assert status == 201, info
        baseline = await steady_rss(worker)

        sampler = RssSampler(worker)
        sampler.start()
        t0 = time.monotonic()
        try:
            results = await asyncio.gather(*(put(f"crowd/{i}.bin", body()) for i in range(UPLOADS)))
        finally:
            sampler.stop()
        elapsed = time.monotonic() - t0

    for status, info in results:
        assert status == 201, info
        assert info["size"] == UPLOAD_SIZE
        assert info["sha256"] == expected
    for i in range(UPLOADS):
        head = await store.head(bucket, f"crowd/{i}.bin")
        assert head["ContentLength"] == UPLOAD_SIZE
        assert head["ETag"].strip('"').endswith("-8")  # 8 MiB parts
    assert await store.open_uploads(bucket) == []
    assert sampler.samples >= 10, f"only {sampler.samples} RSS samples in {elapsed:.1f} s"
    growth = sampler.peak - baseline
    report = (
        f"baseline {baseline / MiB:.0f} MiB, peak {sampler.peak / MiB:.0f} MiB (+{growth / MiB:.0f} MiB) "
        f"for {UPLOADS} x {UPLOAD_SIZE // MiB} MiB in {elapsed:.1f} s; budget {BUDGET // MiB} MiB"
    )
    print(report)
    assert sampler.peak <= baseline + BUDGET, report
    # Free SeaweedFS's disk for the rest of the session.
    for i in range(UPLOADS):
        await store.call("delete_object", Bucket=bucket, Key=f"crowd/{i}.bin")


# -- graceful shutdown -------------------------------------------------------------
async def test_sigterm_aborts_uploads_and_lets_downloads_finish(processes, seaweed, store, bucket, tmp_path):
    gw = await start_gunicorn(
        processes, seaweed, tmp_path, graceful_timeout=12,
        S3GATE_SHUTDOWN_TIMEOUT="8", S3GATE_PART_SIZE=str(PART),
    )  # fmt: skip
    data = random_bytes(24 * MiB)
    await store.put(bucket, "big/film.mkv", data)

    # An upload stalled mid-way: two parts already in S3, the socket kept open.
    key = "incoming/half.bin"
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(request_head("PUT", f"/files/{bucket}/{key}", gw.port, {"Content-Length": str(6 * PART)}))
    sent = random_bytes(2 * PART + PART // 2)
    for i in range(0, len(sent), 256 * 1024):
        writer.write(sent[i : i + 256 * 1024])
        await writer.drain()

    async def two_parts_in_s3() -> bool:
        return await store.parts_done(bucket, key) >= 2

    await eventually(two_parts_in_s3, 10, "two parts of the upload in S3")

    # A download that takes ~3 s (rate-limited), under way at SIGTERM.
    out = tmp_path / "film.mkv"
    download = asyncio.create_task(
        run(
            "curl",
            "-sS",
            "--fail",
            "--limit-rate",
            "8M",
            "-o",
            out,
            gw.url(f"/files/{bucket}/big/film.mkv"),
            timeout=30,
        )
    )

    async def download_started() -> bool:
        return out.exists() and out.stat().st_size > 1 * MiB

    await eventually(download_started, 10, "the download to start")
    assert not download.done()

    t0 = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)

    # The upload is aborted promptly: the client hears 503 (or the connection closes) ...
    try:
        status, _, body = await read_response(reader, timeout=10)
    except (asyncio.IncompleteReadError, ConnectionError):
        status, body = None, b""
    assert status in (503, None), (status, body)
    writer.close()
    # ... and nothing is left in S3, without waiting for shutdown_timeout (8 s).
    await store.assert_nothing_left(bucket, key, timeout=5)
    aborted_after = time.monotonic() - t0
    assert aborted_after < 4, f"upload aborted only after {aborted_after:.1f} s"
    print(f"upload answer {status}, aborted after {aborted_after:.2f} s")

    # The download in flight completes, byte for byte.
    result = await download
    assert result.rc == 0, result.errtext
    assert sha256_file(out) == sha256(data)

    # gunicorn exits cleanly within its graceful timeout.
    rc = await asyncio.wait_for(gw.proc.wait(), 12 + 3)
    elapsed = time.monotonic() - t0
    assert rc == 0, gw.log_tail()
    assert elapsed < 12, f"took {elapsed:.1f} s to stop"
    assert not alive(gw.children[0])
    assert "Traceback" not in gw.log_tail()
    assert "Task was destroyed" not in gw.log_tail()


# -- `s3gate serve`, as run.sh starts it ------------------------------------------------
async def start_serve(
    processes, data_dir: Path, port: int, tmp_path: Path, tag: str, s3_port: int = 0, **settings: str
) -> Running:
    log = tmp_path / f"serve-{tag}.log"
    env = child_env(
        S3GATE_EMBEDDED_S3_PORT=str(s3_port),
        S3GATE_PORT=str(port),
        S3GATE_DATA_DIR=str(data_dir),
        **settings,
    )
    env.pop("S3GATE_AUTH", None)  # the real default: authentication on
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "s3gate"), "serve",
            cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    running = Running(proc, port, log, stop_signal=signal.SIGINT)  # Ctrl-C
    processes.append(running)
    await wait_ready(running, timeout=90)
    running.children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    return running


def worker_loops(r: Running) -> list[str]:
    """The event loop each gunicorn worker of a `s3gate serve` runs, from the libraries it mapped."""
    loops = []
    for pid in r.children:
        proc = psutil.Process(pid)
        if "gunicorn" in " ".join(proc.cmdline()) and "gunicorn" in " ".join(proc.parent().cmdline()):
            maps = Path(f"/proc/{pid}/maps").read_text()
            loops.append("uvloop" if "/uvloop/loop." in maps else "asyncio")
    return loops


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def stop_with_ctrl_c(r: Running) -> None:
    # Every process that was up when the gateway became ready is still up: none crashed.
    gone = [pid for pid in r.children if not alive(pid)]
    assert not gone, f"{gone} exited on their own:\n{r.log_tail()}"
    names = {pid: psutil.Process(pid).name() for pid in r.children}
    assert any("weed" in n for n in names.values()), names
    assert any("gunicorn" in n or "python" in n for n in names.values()), names
    r.proc.send_signal(signal.SIGINT)
    rc = await asyncio.wait_for(r.proc.wait(), 40)
    assert rc == 0, r.log_tail()
    for pid, name in names.items():
        assert not alive(pid), f"{name} ({pid}) still running after Ctrl-C"
    log = r.log_tail()
    assert "Shutting down: Master" in log, log  # gunicorn's own clean exit
    assert "embedded S3 stopped" in log, log
    assert "Traceback" not in log, log
    assert "Task was destroyed" not in log, log  # every task of the workers ended before their loop closed


async def test_s3gate_serve_as_run_sh_starts_it(processes, tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    src = tmp_path / "hello.bin"
    src.write_bytes(random_bytes(3 * MiB))

    first = await start_serve(processes, data_dir, port, tmp_path, "first")
    # Secure by default: an admin with a random password, printed once, kept 0600.
    secret_file = data_dir / "admin-password"
    password = secret_file.read_text().strip()
    assert len(password) >= 16 and oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert password in first.log_tail()
    assert worker_loops(first) and set(worker_loops(first)) == {"asyncio"}  # the default event_loop
    anon = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", first.url("/files/files/"))
    assert anon.text == "401"
    user = f"admin:{password}"
    up = await run("curl", "-sS", "--fail", "-u", user, "-T", src, first.url("/files/files/"))
    assert up.rc == 0, up.errtext
    assert sha256(src.read_bytes()) in up.text
    down = await run("curl", "-sS", "--fail", "-u", user, first.url("/files/files/hello.bin"))
    assert down.rc == 0 and sha256(down.out) == sha256(src.read_bytes())
    # The seed's command works against the default bucket too; its link needs no password.
    link = await run("curl", "-sS", "-u", user, first.url("/downloads3/files/hello.bin"))
    assert link.text.startswith(first.url("/files/files/hello.bin?"))
    fetched = await run("curl", "-sS", "--fail", link.text.strip())
    assert fetched.rc == 0 and sha256(fetched.out) == sha256(src.read_bytes())
    await stop_with_ctrl_c(first)

    # The data directory survives: a restart sees the file and the same admin,
    # and the password is not printed again.
    assert (data_dir / "embedded-s3.json").exists()
    # ...and runs on uvloop when event_loop says so.
    second = await start_serve(processes, data_dir, port, tmp_path, "second", S3GATE_EVENT_LOOP="uvloop")
    assert set(worker_loops(second)) == {"uvloop"}
    assert password not in second.log_tail()
    again = await run("curl", "-sS", "--fail", "-u", user, second.url("/files/files/hello.bin"))
    assert again.rc == 0 and sha256(again.out) == sha256(src.read_bytes())
    await stop_with_ctrl_c(second)


def time_wait_on(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT for c in psutil.net_connections("tcp4")
    )


async def test_serve_starts_again_at_once_on_the_same_ports(processes, tmp_path):
    """Ctrl-C, then `./run.sh` again straight away (issue 11): the same gateway port,
    the same fixed embedded S3 port (8333 in run.sh's default), the same data dir.
    The store's port still has connections in TIME-WAIT; that must not count as in use."""
    data_dir = tmp_path / "data"
    port, s3_port = free_port(), _low_port()
    src = tmp_path / "kept.bin"
    src.write_bytes(random_bytes(MiB))

    first = await start_serve(processes, data_dir, port, tmp_path, "before-stop", s3_port=s3_port)
    user = "admin:" + (data_dir / "admin-password").read_text().strip()
    assert "Change it with: ./run.sh users passwd admin" in first.log_tail()  # a command that exists
    up = await run("curl", "-sS", "--fail", "-u", user, "-T", src, first.url("/files/files/"))
    assert up.rc == 0, up.errtext
    await stop_with_ctrl_c(first)
    # What made the old check refuse: the store's side of its last connections lingers.
    assert time_wait_on(s3_port), "no TIME-WAIT on the store's port: the test would prove nothing"

    second = await start_serve(processes, data_dir, port, tmp_path, "after-stop", s3_port=s3_port)
    down = await run("curl", "-sS", "--fail", "-u", user, second.url("/files/files/kept.bin"))
    assert down.rc == 0 and sha256(down.out) == sha256(src.read_bytes()), down.errtext
    again = await run("curl", "-sS", "--fail", "-u", user, "-T", src, second.url("/files/files/kept-again.bin"))
    assert again.rc == 0, again.errtext
    await stop_with_ctrl_c(second)


def test_serve_refuses_a_store_port_another_process_holds(tmp_path):
    """A foreign program really listening on the embedded S3 port: one clear line, exit 1,
    nothing left running (the gateway's own port: tests/test_launcher.py)."""
    s3_port = _low_port()
    env = child_env(
        S3GATE_EMBEDDED_S3_PORT=str(s3_port), S3GATE_PORT=str(free_port()), S3GATE_DATA_DIR=str(tmp_path / "data")
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", s3_port))
        taken.listen()
        res = subprocess.run(
            [str(BIN / "s3gate"), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"s3gate: port {s3_port} "), res.stderr
    assert "is in use" in lines[0] and "S3GATE_EMBEDDED_S3_PORT=0" in lines[0]
    assert "Traceback" not in res.stdout + res.stderr


# -- several workers starting at once ------------------------------------------------
def _load_link_key(data_dir: str, barrier, results) -> None:
    from s3gate.http.links import LinkSigner
    from s3gate.keyring import server_key

    barrier.wait()
    try:
        signer = LinkSigner(server_key(data_dir, "", "link-signing"))
        results.put(("ok", signer.sign("b", "k", lifetime=60, now=1_000_000)["sig"]))
    except Exception as exc:  # reported to the test, not swallowed
        results.put(("crash", f"{type(exc).__name__}: {exc}"))


def test_workers_starting_together_share_one_link_key(tmp_path):
    """run.sh starts one worker per core on a fresh data dir; each loads or creates the
    link-signing key at start-up. None may crash, and all must end up with the same
    key (a link signed by one worker is checked by another)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # like gunicorn's workers
    workers, rounds = 2, 40
    outcomes: dict[str, int] = {}
    for n in range(rounds):
        path = tmp_path / f"data-{n}"
        barrier, results = ctx.Barrier(workers), ctx.Queue()
        procs = [ctx.Process(target=_load_link_key, args=(str(path), barrier, results)) for _ in range(workers)]
        for p in procs:
            p.start()
        got = [results.get(timeout=20) for _ in procs]
        for p in procs:
            p.join(20)
        crashes = sorted({detail for what, detail in got if what == "crash"})
        if crashes:
            kind = "a worker crashed: " + "; ".join(crashes)
        else:
            kind = "same key" if len({sig for _, sig in got}) == 1 else "different keys"
        outcomes[kind] = outcomes.get(kind, 0) + 1
    assert outcomes == {"same key": rounds}, outcomes


# -- the embedded store dies under `s3gate serve` ----------------------------------------
def weed_child(r: Running) -> psutil.Process:
    found = [p for p in psutil.Process(r.pid).children(recursive=True) if "weed" in p.name()]
    assert len(found) == 1, found
    return found[0]


async def http_status(url: str) -> int | None:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return resp.status
        except (TimeoutError, aiohttp.ClientError):
            return None


async def test_serve_restarts_a_store_killed_with_sigkill(processes, tmp_path):
    data_dir = tmp_path / "data"
    gw = await start_serve(processes, data_dir, free_port(), tmp_path, "store-killed")
    password = (data_dir / "admin-password").read_text().strip()
    user = f"admin:{password}"
    src = tmp_path / "kept.bin"
    src.write_bytes(random_bytes(2 * MiB))
    up = await run("curl", "-sS", "--fail", "-u", user, "-T", src, gw.url("/files/files/"))
    assert up.rc == 0, up.errtext
    weed = weed_child(gw)
    s3_port = int(gw.log_tail().split("embedded S3 ready at http://127.0.0.1:")[1].split(",")[0])

    weed.send_signal(signal.SIGKILL)

    async def healthz_says_down() -> bool:
        return await http_status(gw.url("/healthz")) == 503

    await eventually(healthz_says_down, 10, "/healthz to report the dead store")

    async def restarted() -> bool:
        try:
            if weed.status() == psutil.STATUS_ZOMBIE:
                return False  # not reaped
        except psutil.NoSuchProcess:
            pass
        else:
            return False
        if "ready again" not in gw.log_tail():  # the launcher's own word, printed after its readiness wait
            return False
        return await http_status(gw.url("/readyz")) == 200 and await http_status(gw.url("/healthz")) == 200

    await eventually(restarted, 60, "the dead store reaped and a new one serving")
    new = weed_child(gw)
    assert new.pid != weed.pid
    assert any(c.laddr.port == s3_port for c in new.net_connections("inet") if c.status == psutil.CONN_LISTEN)
    gw.children = [p.pid for p in psutil.Process(gw.pid).children(recursive=True)]

    async def kept() -> bool:
        # The restarted volume server may register with its master a moment after the S3
        # API answers (seen once in CI on a loaded machine): a clean 503 meanwhile, then the bytes.
        down = await run("curl", "-sS", "--fail", "-u", user, gw.url("/files/files/kept.bin"))
        assert down.rc in (0, 22), down.errtext  # 22: an HTTP error status, never a broken reply
        return down.rc == 0 and sha256(down.out) == sha256(src.read_bytes())

    await eventually(kept, 30, "the object stored before the kill, byte for byte")
    log = gw.log.read_text(errors="replace")  # all of it: the 503s meanwhile may fill the tail
    assert "exited with code -9" in log and "ready again" in log, gw.log_tail()
    await stop_with_ctrl_c(gw)


async def test_serve_exits_non_zero_when_the_store_cannot_come_back(processes, tmp_path):
    data_dir = tmp_path / "data"
    gw = await start_serve(processes, data_dir, free_port(), tmp_path, "store-broken")
    gunicorn = [p for p in psutil.Process(gw.pid).children() if "weed" not in p.name()]
    weed = weed_child(gw)
    # The next start cannot open its log: a directory now stands where the file was.
    log_path = data_dir / "seaweedfs" / "seaweedfs.log"
    log_path.rename(log_path.with_suffix(".old"))
    log_path.mkdir()

    weed.send_signal(signal.SIGKILL)

    rc = await asyncio.wait_for(gw.proc.wait(), 60)
    assert rc == 1, gw.log_tail()
    for pid in [p.pid for p in gunicorn] + gw.children:
        assert not alive(pid), f"{pid} still running"
    log = gw.log_tail()
    assert "did not start again" in log, log
    assert "Traceback" not in log, log
