#!/usr/bin/env python3
"""s3gate benchmark: s3gate vs. a plain nginx reverse proxy vs. SeaweedFS direct.

    .venv/bin/python bench/run.py            # full run (1 GiB, 5 GiB, 32 x 256 MiB), 3 repeats
    .venv/bin/python bench/run.py --quick    # small sizes, to iterate fast
    .venv/bin/python bench/run.py --repeat 5 --only 1,4

Everything runs on 127.0.0.1 on free ports, in one temporary directory that is
removed at exit (also on Ctrl-C, SIGTERM or the global time limit):

* SeaweedFS (``weed mini``), bucket ``bench``;
* s3gate exactly as in production: gunicorn with ``aiohttp.GunicornWebWorker``,
  one worker, ``S3GATE_AUTH=0``, talking to that SeaweedFS;
* a private nginx, a plain reverse proxy to the same SeaweedFS (request and
  response buffering off, HTTP/1.1 upstream) so SigV4-signed curl requests
  through it still verify.

Sections (``--only``):
1. 1 GiB upload and download with curl: direct (``--aws-sigv4``), via nginx
   (same curl), via s3gate (``PUT /files/...``; GET ``?mode=proxy`` and
   ``?mode=redirect`` with ``-L``). MB/s (10^6 bytes/s) and ratio to direct.
2. Peak RSS of the gateway worker for 100 MiB, 1 GiB, 5 GiB uploads generated
   on the fly (generator | curl -T - with a Content-Length).
3. 32 concurrent 256 MiB uploads through s3gate: all must succeed, peak
   worker RSS vs. upload budget + baseline.
4. Small objects: 400 x 64 KiB PUT then GET at 32 in flight, one Python
   (aiohttp) client for all three targets; SigV4 requests are signed before
   the clock starts so signing costs nobody.

Every figure is repeated ``--repeat`` times (default 3) and the median is
reported; ratios are the median of the per-repeat ratios (the targets are
measured back to back inside each repeat, in an order that rotates from one
repeat to the next, so a noisy moment hits all of them).
The Markdown table is printed and written to bench/results.md (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent  # the venv's bin (weed, gunicorn live there)

ACCESS_KEY = "benchkey"
SECRET_KEY = "benchsecret0123456789"
REGION = "us-east-1"
BUCKET = "bench"
SIGV4 = ["--aws-sigv4", f"aws:amz:{REGION}:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}"]
CURL_FMT = (
    "%{http_code} %{size_upload} %{size_download} %{speed_upload} %{speed_download} %{time_total} %{num_redirects}"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------- generator
def generate(n: int) -> None:
    """Write n pseudo-random bytes to stdout (hidden sub-command ``_gen N``)."""
    fd = sys.stdout.fileno()
    with contextlib.suppress(OSError):
        import fcntl

        fcntl.fcntl(fd, 1031, 1 * MiB)  # F_SETPIPE_SZ
    block = random.Random(n).randbytes(4 * MiB)
    mv = memoryview(block)
    off = 0
    while n > 0:
        k = min(n, len(block) - off, 1 * MiB)
        written = os.write(fd, mv[off : off + k])
        n -= written
        off = (off + written) % len(block)


# ---------------------------------------------------------------- processes
class Procs:
    """Every process we start, each in its own session, killed by group at exit."""

    def __init__(self) -> None:
        self.live: list[tuple[str, subprocess.Popen]] = []
        self.lock = threading.Lock()

    def popen(self, name: str, argv: list[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(argv, **kw)
        with self.lock:
            self.live.append((name, p))
        return p

    def forget(self, p: subprocess.Popen) -> None:
        with self.lock:
            self.live = [(n, q) for n, q in self.live if q is not p]

    def stop(self, p: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        else:
            # the leader is gone; its group may not be
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        self.forget(p)

    def stop_all(self) -> None:
        with self.lock:
            live = list(reversed(self.live))
        for _name, p in live:
            self.stop(p, timeout=8)


PROCS = Procs()


def run(argv: list[str], timeout: float, name: str = "cmd", **kw: Any) -> subprocess.CompletedProcess:
    """subprocess.run with a time limit and registration for cleanup."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = PROCS.popen(name, argv, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        PROCS.stop(p, timeout=2, sig=signal.SIGKILL)
        raise BenchError(f"{name} timed out after {timeout:.0f}s: {shlex.join(argv)}") from None
    PROCS.forget(p)
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(avoid: set[int]) -> int:
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid and port < 55000:
            avoid.add(port)
            return port
    raise BenchError("no free port")


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not listen on {port} within {timeout:.0f}s")


# ---------------------------------------------------------------- /proc
def proc_children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def proc_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += proc_children(p)
    return pids


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {key} for {pid}")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def sys_busy(split: bool = False) -> Any:
    """CPU seconds spent busy by the whole machine so far (all cores).

    With split=True: (busy in tasks, busy in irq/softirq). On loopback the
    softirq share is mostly the TCP stack moving the bytes around.
    """
    vals = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    if split:
        return (user + nice + system + steal) / CLK_TCK, (irq + softirq) / CLK_TCK
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


WAIT_IDLE = {"max": 0.0}


def wait_idle(what: str) -> None:
    """Wait (up to --wait-idle seconds) until the machine is nearly idle, so other jobs skew less."""
    deadline = time.monotonic() + WAIT_IDLE["max"]
    told = False
    while True:
        b0 = sys_busy()
        time.sleep(1.0)
        busy = sys_busy() - b0
        if busy < 0.15 * (os.cpu_count() or 1):
            return
        if time.monotonic() > deadline:
            log(f"  machine still busy ({busy:.2f} cores used by others); measuring {what} anyway")
            return
        if not told:
            log(f"  machine busy ({busy:.2f} cores); waiting up to {WAIT_IDLE['max']:.0f}s before {what}")
            told = True


def own_cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: curl, generators
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class RssPoller:
    """Peak RSS of one process: VmHWM reset via clear_refs, plus VmRSS polled every 20 ms."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self.hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssPoller:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # reset VmHWM
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.baseline_kb = status_kb(self.pid, "VmRSS")
        self.peak_kb = self.baseline_kb
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError, BenchError):
                self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(OSError, BenchError):
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            if self.hwm_reset:
                self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmHWM"))


# ---------------------------------------------------------------- SigV4
_signer = None


def sign(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> dict[str, str]:
    """SigV4 headers for one request (botocore's signer, payload hash included)."""
    global _signer
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    if _signer is None:
        _signer = S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION)
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    _signer.add_auth(req)
    return {k: v for k, v in req.headers.items()}


def s3_call(method: str, url: str, body: bytes = b"", timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body or None, method=method, headers=sign(method, url, body))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


# ---------------------------------------------------------------- the stack
@dataclass
class Stack:
    work: Path
    quick: bool
    nginx_workers: str
    nginx_keepalive: int
    ports: set[int] = field(default_factory=set)
    weed: subprocess.Popen | None = None
    nginx: subprocess.Popen | None = None
    gw_master: subprocess.Popen | None = None
    sw_port: int = 0
    master_port: int = 0
    ng_port: int = 0
    gw_port: int = 0
    gw_env: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    code_seen: list[str] = field(default_factory=list)
    gw_nworkers: int = 1

    # -- SeaweedFS
    def start_weed(self) -> None:
        for _ in range(100):
            base = random.randrange(20000, 29000, 10)
            ports = [base + i for i in range(5)]
            if all(port_free(p) and port_free(p + 10000) for p in ports):
                break
        else:
            raise BenchError("no free port range for SeaweedFS")
        s3, master, volume, filer, admin = ports
        self.ports.update(ports + [p + 10000 for p in ports])
        self.sw_port, self.master_port = s3, master
        data = self.work / "weed"
        data.mkdir()
        env = clean_env()
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        argv = [
            str(find_bin("weed")), f"-logdir={self.work}", "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}",
            f"-filer.port={filer}", f"-admin.port={admin}",
            f"-filer.localSocket={self.work}/filer.sock", f"-s3.localSocket={self.work}/s3.sock",
            f"-bucket={BUCKET}",
        ]  # fmt: skip
        logf = open(self.work / "weed.log", "wb")
        self.weed = PROCS.popen("weed", argv, env=env, stdout=logf, stderr=subprocess.STDOUT, cwd=self.work)
        wait_port(s3, 60, self.weed, "SeaweedFS")
        deadline = time.monotonic() + 60
        while True:  # the bucket appears a moment after the port
            with contextlib.suppress(OSError):
                status, _, _ = s3_call("HEAD", f"{self.s3_url}/{BUCKET}", timeout=5)
                if status == 200:
                    break
            if time.monotonic() > deadline or self.weed.poll() is not None:
                raise BenchError("SeaweedFS bucket never became ready; see weed.log")
            time.sleep(0.3)
        log(f"SeaweedFS up: S3 on 127.0.0.1:{s3} (pid {self.weed.pid})")

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.sw_port}"

    def weed_pids(self) -> list[int]:
        return proc_tree(self.weed.pid) if self.weed else []

    def remove_sockets(self) -> None:
        """weed mini leaves /tmp/seaweedfs-*-grpc-PORT.sock behind: remove the ones of our ports."""
        if not self.sw_port:
            return
        for path in Path(tempfile.gettempdir()).glob("seaweedfs-*.sock"):
            m = re.fullmatch(r"seaweedfs-.*-(\d+)\.sock", path.name)
            with contextlib.suppress(OSError):
                if m and int(m.group(1)) in self.ports and path.lstat().st_mtime >= self.started - 1:
                    path.unlink()

    def vacuum(self) -> None:
        """Reclaim space of deleted objects so a full run stays small on disk."""
        with contextlib.suppress(OSError):
            urllib.request.urlopen(
                f"http://127.0.0.1:{self.master_port}/vol/vacuum?garbageThreshold=0.01", timeout=300
            ).read()

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            status, _, body = s3_call("DELETE", f"{self.s3_url}/{BUCKET}/{key}")
            if status not in (200, 204):
                log(f"warning: DELETE {key}: {status} {body[:200]!r}")

    def head_size(self, key: str) -> int:
        status, headers, _ = s3_call("HEAD", f"{self.s3_url}/{BUCKET}/{key}")
        if status != 200:
            raise BenchError(f"HEAD {key} direct: {status}")
        return int(headers.get("Content-Length", "-1"))

    def describe_open_uploads(self) -> str:
        """Open multipart uploads in the bucket and how many parts each has."""
        try:
            status, _, body = s3_call("GET", f"{self.s3_url}/{BUCKET}?uploads", timeout=10)
            if status != 200:
                return f"ListMultipartUploads: HTTP {status}"
            keys = re.findall(rb"<Key>([^<]*)</Key>", body)
            ids = re.findall(rb"<UploadId>([^<]*)</UploadId>", body)
            parts = []
            for k, u in zip(keys, ids, strict=False):
                st, _, b = s3_call("GET", f"{self.s3_url}/{BUCKET}/{k.decode()}?uploadId={u.decode()}", timeout=10)
                parts.append(str(b.count(b"<Part>")) if st == 200 else "?")
            return f"{len(ids)} multipart upload(s) open, parts stored per upload: [{', '.join(parts)}]"
        except OSError as exc:
            return f"could not list uploads: {exc}"

    def gateway_errors(self) -> list[str]:
        """ERROR entries in the gateway's log so far (first line of each)."""
        with contextlib.suppress(OSError):
            lines = (self.work / "gunicorn.log").read_text(errors="replace").splitlines()
            return [line for line in lines if " ERROR " in line]
        return []

    def first_gateway_traceback(self, max_lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            lines = (self.work / "gunicorn.log").read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if " ERROR " in line:
                    block = [line]
                    for nxt in lines[i + 1 : i + max_lines]:
                        if re.match(r"^(\d{4}-\d\d-\d\d |\[\d{4})", nxt):
                            break
                        block.append(nxt)
                    return "\n".join(block)
        return ""

    def open_multipart_uploads(self) -> int:
        status, _, body = s3_call("GET", f"{self.s3_url}/{BUCKET}?uploads")
        if status != 200:
            return -1
        return body.count(b"<Upload>")

    # -- nginx
    def start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise BenchError("nginx not installed (apt-get install -y nginx)")
        d = self.work / "nginx"
        d.mkdir()
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir()
        self.ng_port = free_port(self.ports)
        upstream_keepalive = f"keepalive {self.nginx_keepalive};" if self.nginx_keepalive else ""
        conn_header = 'proxy_set_header Connection "";' if self.nginx_keepalive else ""
        conf = f"""
worker_processes {self.nginx_workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream seaweedfs {{ server 127.0.0.1:{self.sw_port}; {upstream_keepalive} }}
    server {{
        listen 127.0.0.1:{self.ng_port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://seaweedfs;
            proxy_set_header Host $http_host;
            proxy_http_version 1.1;
            {conn_header}
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
    }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        logf = open(d / "stdout.log", "wb")
        self.nginx = PROCS.popen(
            "nginx", [nginx, "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
            stdout=logf, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_port(self.ng_port, 20, self.nginx, "nginx")
        log(f"nginx up: 127.0.0.1:{self.ng_port} -> SeaweedFS (pid {self.nginx.pid})")

    @property
    def ng_url(self) -> str:
        return f"http://127.0.0.1:{self.ng_port}"

    def nginx_pids(self) -> list[int]:
        return proc_tree(self.nginx.pid) if self.nginx else []

    def nginx_buffered_warnings(self) -> int:
        with contextlib.suppress(OSError):
            return (self.work / "nginx" / "error.log").read_text().count("buffered to a temporary file")
        return 0

    # -- s3gate
    def start_gateway(self, budget: int, extra: dict[str, str] | None = None) -> None:
        if not self.gw_port:
            self.gw_port = free_port(self.ports)
        (self.work / "gw-data").mkdir(exist_ok=True)
        cfg = self.work / "s3gate.toml"
        cfg.write_text("# empty: the benchmark sets everything in the environment\n")
        env = clean_env()
        env.update(
            S3GATE_CONFIG=str(cfg),
            S3GATE_S3_ENDPOINT=self.s3_url,
            S3GATE_S3_ACCESS_KEY=ACCESS_KEY,
            S3GATE_S3_SECRET_KEY=SECRET_KEY,
            S3GATE_AUTH="0",
            S3GATE_DATA_DIR=str(self.work / "gw-data"),
            S3GATE_PART_SIZE="16MiB",
            S3GATE_UPLOAD_MEMORY_BUDGET=str(budget),
            # The store is on loopback, so link_mode "auto" would pick gateway-signed links and
            # ?mode=redirect would quietly proxy. The client here can reach SeaweedFS: presign.
            S3GATE_LINK_MODE="s3",
        )
        env.update(extra or {})
        self.gw_env = {k: v for k, v in env.items() if k.startswith("S3GATE_") or k in (extra or {})}
        argv = [
            str(find_bin("gunicorn")), "s3gate.app:app_factory",
            "--worker-class", "aiohttp.GunicornWebWorker",
            "--bind", f"127.0.0.1:{self.gw_port}", "--workers", str(self.gw_nworkers), "--no-control-socket",
        ]  # fmt: skip
        fp = code_fingerprint()
        if fp not in self.code_seen:
            if self.code_seen:
                log(f"WARNING: s3gate's source changed during the run (now {fp}); figures mix versions")
            self.code_seen.append(fp)
        logf = open(self.work / "gunicorn.log", "ab")
        self.gw_master = PROCS.popen("gunicorn", argv, env=env, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT)
        wait_port(self.gw_port, 60, self.gw_master, "gunicorn")
        deadline = time.monotonic() + 30
        while len(proc_children(self.gw_master.pid)) < self.gw_nworkers:
            if time.monotonic() > deadline:
                raise BenchError("gunicorn has no worker")
            time.sleep(0.1)
        # The worker must answer HTTP (not just have the socket bound by the master).
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.gw_url}/files/{BUCKET}/__bench_probe__", timeout=5) as r:
                    r.read()
                break
            except urllib.error.HTTPError:
                break  # any HTTP answer will do (404 expected)
            except OSError:
                if time.monotonic() > deadline or self.gw_master.poll() is not None:
                    raise BenchError("s3gate does not answer; see gunicorn.log") from None
                time.sleep(0.2)
        log(f"s3gate up: 127.0.0.1:{self.gw_port} (master {self.gw_master.pid}, worker(s) {self.gw_workers()})")

    def restart_gateway(self, args: argparse.Namespace) -> None:
        """A fresh worker, warmed with one small upload and download, so its baseline RSS is clean."""
        self.stop_gateway()
        self.start_gateway(args.budget, args.gw_extra)
        self.warm_gateway()

    def warm_gateway(self) -> None:
        body = random.Random(7).randbytes(1 * MiB)
        url = f"{self.gw_url}/files/{BUCKET}/__warmup__"
        req = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.status not in (200, 201):
                raise BenchError(f"warm-up upload: HTTP {r.status}")
        with urllib.request.urlopen(url + "?mode=proxy", timeout=60) as r:
            if r.read() != body:
                raise BenchError("warm-up download returned other bytes")
        self.delete(["__warmup__"])
        time.sleep(0.5)

    def stop_gateway(self) -> None:
        if self.gw_master is not None:
            PROCS.stop(self.gw_master, timeout=40)
            self.gw_master = None

    @property
    def gw_url(self) -> str:
        return f"http://127.0.0.1:{self.gw_port}"

    def gw_workers(self) -> list[int]:
        return proc_children(self.gw_master.pid) if self.gw_master else []

    @property
    def gw_worker(self) -> int:
        kids = proc_children(self.gw_master.pid) if self.gw_master else []
        if len(kids) != 1:
            raise BenchError(f"expected one gunicorn worker, found {kids}")
        return kids[0]


def code_fingerprint() -> str:
    """Short hash of the gateway's source, so a table says which code it measured."""
    h = hashlib.sha256()
    for path in sorted((REPO / "s3gate").rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("S3GATE_", "AWS_"))}


def find_bin(name: str) -> Path:
    p = BIN / name
    if p.exists():
        return p
    w = shutil.which(name)
    if not w:
        raise BenchError(f"{name} not found (looked in {BIN} and PATH)")
    return Path(w)


def gateway_importable() -> tuple[bool, str]:
    r = subprocess.run(
        [sys.executable, "-c", "import s3gate.app; s3gate.app.app_factory"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    return r.returncode == 0, (r.stderr.strip().splitlines() or [""])[-1]


# ---------------------------------------------------------------- curl transfers
@dataclass
class Transfer:
    code: int
    up_bytes: int
    down_bytes: int
    speed_up: float
    speed_down: float
    seconds: float
    redirects: int
    body: bytes = b""
    cpu: dict[str, float] = field(default_factory=dict)


def parse_curl(out: bytes) -> Transfer:
    parts = out.decode().split()
    if len(parts) != 7:
        raise BenchError(f"unexpected curl -w output: {out!r}")
    code, up, down, su, sd, tt, nr = parts
    return Transfer(int(code), int(up), int(down), float(su), float(sd), float(tt), int(nr))


class CpuMeter:
    """CPU seconds used by client / proxy / store between enter and exit."""

    def __init__(self, stack: Stack, proxy: str):
        self.stack, self.proxy = stack, proxy

    def _proxy_pids(self) -> list[int]:
        if self.proxy == "nginx":
            return self.stack.nginx_pids()
        if self.proxy == "s3gate":
            return self.stack.gw_workers()
        return []

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.c0 = own_cpu()
        self.p0 = cpu_seconds(self._proxy_pids())
        self.s0 = cpu_seconds(self.stack.weed_pids())
        self.b0, self.irq0 = sys_busy(split=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.monotonic() - self.t0
        self.result = {
            "wall": self.wall,
            "client": own_cpu() - self.c0,
            "proxy": cpu_seconds(self._proxy_pids()) - self.p0,
            "store": cpu_seconds(self.stack.weed_pids()) - self.s0,
        }
        ours = self.result["client"] + self.result["proxy"] + self.result["store"]
        tasks, irq = sys_busy(split=True)
        self.result["softirq"] = irq - self.irq0
        self.result["other"] = max(0.0, tasks - self.b0 - ours)


class Profiler:
    """py-spy record of the gateway worker while a measurement runs (--profile DIR).

    Writes collapsed stacks (DIR/NAME.txt) and a summary of the hottest frames
    (DIR/NAME.top.txt). A no-op without --profile.
    """

    def __init__(self, stack: Stack, args: argparse.Namespace, name: str, active: bool = True):
        self.stack, self.args, self.name = stack, args, name
        self.active = bool(args.profile) and active
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        if not self.active:
            return self
        out = Path(self.args.profile) / f"{self.name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [self.args.py_spy, "record", "--pid", str(self.stack.gw_workers()[0]), "--rate", "250",
                "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
        self.out = out
        self.proc = PROCS.popen("py-spy", argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attach
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(self.proc, timeout=2)
        with contextlib.suppress(OSError):
            summarize_profile(self.out)


def summarize_profile(path: Path, top: int = 25) -> None:
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_t[frames[-1]] = self_t.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    if not total:
        return
    lines = [f"{path.name}: {total} samples", "", "self %  frame"]
    lines += [f"{100 * c / total:6.1f}  {f}" for f, c in sorted(self_t.items(), key=lambda x: -x[1])[:top]]
    lines += ["", "incl %  frame"]
    lines += [f"{100 * c / total:6.1f}  {f}" for f, c in sorted(incl.items(), key=lambda x: -x[1])[: top * 2]]
    path.with_suffix(".top.txt").write_text("\n".join(lines) + "\n")


def curl(args: list[str], timeout: float, resp_file: Path | None = None, stdin: Any = None) -> Transfer:
    out = str(resp_file) if resp_file else "/dev/null"
    argv = ["curl", "-sS", "--max-time", str(int(timeout)), "-o", out, "-w", CURL_FMT, *args]
    r = run(argv, timeout + 30, name="curl", stdin=stdin)
    if r.returncode != 0:
        raise BenchError(f"curl failed ({r.returncode}): {r.stderr.decode()[-500:]} :: {shlex.join(argv)}")
    t = parse_curl(r.stdout)
    if resp_file is not None and resp_file.exists():
        t.body = resp_file.read_bytes()[:100_000]
    return t


def curl_generated(size: int, url: str, timeout: float, resp_file: Path, extra: list[str] | None = None) -> Transfer:
    """generator | curl -T - with an explicit Content-Length (no chunking)."""
    gen = PROCS.popen("gen", [sys.executable, str(Path(__file__).resolve()), "_gen", str(size)], stdout=subprocess.PIPE)
    try:
        args = ["-T", "-", "-H", f"Content-Length: {size}", "-H", "Transfer-Encoding:", *(extra or []), url]
        return curl(args, timeout, resp_file, stdin=gen.stdout)
    finally:
        gen.stdout.close()
        try:
            gen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(gen, timeout=2)


def check_upload(t: Transfer, size: int, what: str, sha256: str | None = None, gateway: bool = False) -> None:
    if t.code not in (200, 201):
        raise BenchError(f"{what}: HTTP {t.code}: {t.body[:300]!r}")
    if t.up_bytes != size:
        raise BenchError(f"{what}: curl sent {t.up_bytes} bytes, expected {size}")
    if gateway:
        try:
            info = json.loads(t.body)
        except ValueError:
            raise BenchError(f"{what}: response is not JSON: {t.body[:300]!r}") from None
        if isinstance(info, dict) and "files" in info and isinstance(info["files"], list) and info["files"]:
            info = info["files"][0]
        if int(info.get("size", -1)) != size:
            raise BenchError(f"{what}: gateway says size {info.get('size')}, expected {size}")
        if sha256 and info.get("sha256") and info["sha256"] != sha256:
            raise BenchError(f"{what}: gateway sha256 {info['sha256']} != {sha256}")


def check_download(t: Transfer, size: int, what: str, redirects: int = 0) -> None:
    if t.code != 200 or t.down_bytes != size:
        raise BenchError(f"{what}: HTTP {t.code}, {t.down_bytes} bytes (expected 200, {size})")
    if t.redirects != redirects:
        raise BenchError(f"{what}: {t.redirects} redirects, expected {redirects}")


# ---------------------------------------------------------------- results
def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt(x: float, nd: int = 0) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:,.{nd}f}"


def fmt_runs(xs: list[float], nd: int = 0) -> str:
    return ", ".join(fmt(x, nd) for x in xs) if xs else "n/a"


def size_label(n: int) -> str:
    if n % GiB == 0:
        return f"{n // GiB} GiB"
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    return f"{n // KiB} KiB"


def cpu_label(samples: list[dict[str, float]]) -> str:
    """Median cores used by client / proxy / store / everything else over the transfer."""
    if not samples:
        return "n/a"
    parts = []
    for k in ("client", "proxy", "store", "softirq", "other"):
        vals = [s[k] / s["wall"] for s in samples if s["wall"] > 0]
        parts.append(f"{med(vals):.2f}")
    return " / ".join(parts)


def rotate(items: list[Any], r: int) -> list[Any]:
    """The order of the targets changes every repeat, so none always goes first."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


# ---------------------------------------------------------------- section 1
def section_big(stack: Stack, args: argparse.Namespace, gw: bool) -> list[str]:
    size = args.big
    label = size_label(size)
    log(f"section 1: creating a {label} pseudo-random file")
    path = stack.work / "big.bin"
    h = hashlib.sha256()
    rng = random.Random(1)
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = rng.randbytes(min(left, 16 * MiB))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    sha = h.hexdigest()
    timeout = max(120, size / (10 * 1e6))  # never slower than 10 MB/s
    resp = stack.work / "resp.json"

    # The object every download reads: uploaded once, directly, outside the clock.
    dl_key = "big/download-source"
    t = curl([*SIGV4, "-T", str(path), f"{stack.s3_url}/{BUCKET}/{dl_key}"], timeout, resp)
    check_upload(t, size, "seed upload")

    ups: dict[str, list[float]] = {k: [] for k in ("direct", "nginx", "s3gate")}
    downs: dict[str, list[float]] = {k: [] for k in ("direct", "nginx", "s3gate proxy", "s3gate redirect")}
    cpu: dict[str, list[dict[str, float]]] = {}

    def up_direct(key: str) -> Transfer:
        return curl([*SIGV4, "-T", str(path), f"{stack.s3_url}/{BUCKET}/{key}"], timeout, resp)

    def up_nginx(key: str) -> Transfer:
        return curl([*SIGV4, "-T", str(path), f"{stack.ng_url}/{BUCKET}/{key}"], timeout, resp)

    def up_gw(key: str) -> Transfer:
        return curl(["-T", str(path), f"{stack.gw_url}/files/{BUCKET}/{key}"], timeout, resp)

    def dn(url: str, *extra: str) -> Callable[[], Transfer]:
        return lambda: curl([*extra, url], timeout)

    uploads = [("direct", "", up_direct, False), ("nginx", "nginx", up_nginx, False)]
    downloads = [
        ("direct", "", dn(f"{stack.s3_url}/{BUCKET}/{dl_key}", *SIGV4), 0),
        ("nginx", "nginx", dn(f"{stack.ng_url}/{BUCKET}/{dl_key}", *SIGV4), 0),
    ]
    if gw:
        uploads.append(("s3gate", "s3gate", up_gw, True))
        downloads += [
            ("s3gate proxy", "s3gate", dn(f"{stack.gw_url}/files/{BUCKET}/{dl_key}?mode=proxy"), 0),
            ("s3gate redirect", "s3gate", dn(f"{stack.gw_url}/files/{BUCKET}/{dl_key}?mode=redirect", "-L"), 1),
        ]

    # warm-up: one download per path (page cache, connection setup, lazy imports)
    for name, _, fn, redirects in downloads:
        check_download(fn(), size, f"warm-up download {name}", redirects)

    for r in range(args.repeat):
        wait_idle(f"section 1 repeat {r + 1}")
        written: list[str] = []
        for name, proxy, fn, is_gw in rotate(uploads, r):
            key = f"big/up-{name}-{r}"
            with Profiler(stack, args, f"big-upload-{name}", proxy == "s3gate" and r == 0), CpuMeter(stack, proxy) as m:
                t = fn(key)
            check_upload(t, size, f"upload {name}", sha if is_gw else None, gateway=is_gw)
            got = stack.head_size(key)
            if got != size:
                raise BenchError(f"upload {name}: stored object has {got} bytes, expected {size}")
            ups[name].append(t.speed_up / 1e6)
            cpu.setdefault("up " + name, []).append(m.result)
            written.append(key)
            log(f"  repeat {r + 1}: upload {name}: {t.speed_up / 1e6:.0f} MB/s")
        for name, proxy, fn, redirects in rotate(downloads, r):
            tag = name.replace(" ", "-")
            with (
                Profiler(stack, args, f"big-download-{tag}", proxy == "s3gate" and r == 0),
                CpuMeter(stack, proxy) as m,
            ):
                t = fn()
            check_download(t, size, f"download {name}", redirects)
            downs[name].append(t.speed_down / 1e6)
            cpu.setdefault("down " + name, []).append(m.result)
            log(f"  repeat {r + 1}: download {name}: {t.speed_down / 1e6:.0f} MB/s")
        stack.delete(written)
        stack.vacuum()  # every repeat starts from the same store state
    stack.delete([dl_key])
    path.unlink()

    def ratio_runs(d: dict[str, list[float]], name: str, ref: str = "direct") -> list[float]:
        return [a / b for a, b in zip(d[name], d[ref], strict=True) if b]

    rows = [
        f"### 1. {label} upload and download (curl, MB/s = 10^6 bytes/s)",
        "",
        "| transfer | path | MB/s (median) | runs | ratio to direct | cores used: client / proxy / store / softirq / other |",
        "|---|---|---:|---|---:|---|",
    ]
    for kind, d in (("upload", ups), ("download", downs)):
        for name in d:
            if not d[name]:
                rows.append(f"| {kind} | {name} | not run | | | |")
                continue
            rows.append(
                f"| {kind} | {name} | {fmt(med(d[name]))} | {fmt_runs(d[name])} | "
                f"{med(ratio_runs(d, name)):.2f} | {cpu_label(cpu[('up ' if kind == 'upload' else 'down ') + name])} |"
            )
    rows += [
        "",
        f"Uploads: `curl -T {label.replace(' ', '')}-file` (direct and nginx signed with `--aws-sigv4`); "
        "downloads read one object (uploaded directly) to /dev/null. "
        f"nginx spooled a request body to disk: {stack.nginx_buffered_warnings()} time(s).",
        "",
    ]
    return rows


def run_watched(stack: Stack, args: argparse.Namespace, fns: list[Callable[[], None]], what: str) -> None:
    """Run fns in threads; fail (not hang) if the gateway worker stops reading for --stall-timeout s.

    Progress = the worker's rchar in /proc/PID/io (bytes it read from sockets).
    On a stall the curls are killed and the open multipart uploads are described.
    """
    pid = stack.gw_worker
    threads = [threading.Thread(target=fn, daemon=True) for fn in fns]
    for th in threads:
        th.start()
    last, since = proc_rchar(pid), time.monotonic()
    while any(th.is_alive() for th in threads):
        time.sleep(0.5)
        now, cur = time.monotonic(), proc_rchar(pid)
        if cur != last:
            last, since = cur, now
        elif now - since > args.stall_timeout:
            alive = sum(th.is_alive() for th in threads)
            diag = stack.describe_open_uploads()
            if args.stall_signal:  # e.g. a diagnostics hook in the worker that dumps its asyncio tasks
                with contextlib.suppress(OSError):
                    os.kill(pid, getattr(signal, "SIG" + args.stall_signal.upper().removeprefix("SIG")))
                time.sleep(2)
            with PROCS.lock:
                clients = [p for name, p in PROCS.live if name in ("curl", "gen")]
            for p in clients:
                PROCS.stop(p, timeout=2, sig=signal.SIGKILL)
            for th in threads:
                th.join(10)
            raise BenchError(
                f"{what}: the gateway worker read nothing for {args.stall_timeout:.0f}s with {alive} "
                f"upload(s) unfinished (stalled, not slow); in S3: {diag}"
            )


def proc_rchar(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return -1


# ---------------------------------------------------------------- section 2
def section_rss(stack: Stack, args: argparse.Namespace) -> list[str]:
    resp = stack.work / "resp.json"
    rows = [
        "### 2. Peak RSS of the gateway worker, one upload (generator | curl -T -)",
        "",
        "| upload | peak RSS MB (median) | runs | baseline MB | peak - baseline MB | MB/s (median) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for size in args.rss_sizes:
        peaks, bases, speeds = [], [], []
        for r in range(args.repeat):
            stack.restart_gateway(args)
            wait_idle(f"section 2 {size_label(size)} run {r + 1}")
            key = f"rss/{size}-{r}"
            pid = stack.gw_worker
            got: list[Any] = [None]

            def upload(got: list[Any] = got, size: int = size, key: str = key) -> None:
                try:
                    got[0] = curl_generated(size, f"{stack.gw_url}/files/{BUCKET}/{key}", max(120, size / 10e6), resp)
                except Exception as exc:
                    got[0] = exc

            with (
                Profiler(stack, args, f"rss-upload-{size_label(size).replace(' ', '')}", r == 0),
                RssPoller(pid) as poll,
            ):
                run_watched(stack, args, [upload], f"{size_label(size)} upload")
            if not isinstance(got[0], Transfer):
                raise BenchError(f"rss upload {size_label(size)}: {got[0]}")
            t = got[0]
            check_upload(t, size, f"rss upload {size_label(size)}", gateway=True)
            if stack.head_size(key) != size:
                raise BenchError(f"rss upload {size_label(size)}: stored size differs")
            stack.delete([key])
            peaks.append(poll.peak_kb * 1024 / 1e6)
            bases.append(poll.baseline_kb * 1024 / 1e6)
            speeds.append(t.speed_up / 1e6)
            log(
                f"  {size_label(size)} run {r + 1}: peak RSS {peaks[-1]:.0f} MB "
                f"(baseline {bases[-1]:.0f} MB), {speeds[-1]:.0f} MB/s"
            )
        growth = [p - b for p, b in zip(peaks, bases, strict=True)]
        rows.append(
            f"| {size_label(size)} | {fmt(med(peaks))} | {fmt_runs(peaks)} | {fmt(med(bases))} | "
            f"{fmt(med(growth))} | {fmt(med(speeds))} |"
        )
        stack.vacuum()
    rows += [
        "",
        "RSS of the single gunicorn worker, restarted before each run and warmed with one 1 MiB upload and "
        "download (baseline = its RSS then): VmHWM (reset through /proc/PID/clear_refs) and VmRSS polled "
        "every 20 ms, whichever is higher. MB = 10^6 bytes.",
        "",
    ]
    return rows


# ---------------------------------------------------------------- section 3
def section_crowd(stack: Stack, args: argparse.Namespace) -> list[str]:
    n, size, budget = args.crowd, args.crowd_size, args.budget
    walls, peaks, bases, oks, aggs = [], [], [], [], []
    cpus: list[dict[str, float]] = []
    for r in range(args.repeat):
        stack.restart_gateway(args)
        wait_idle(f"section 3 repeat {r + 1}")
        pid = stack.gw_worker
        results: list[Any] = [None] * n

        def one(i: int, r: int = r, results: list[Any] = results) -> None:
            key = f"crowd/{r}-{i}"
            try:
                t = curl_generated(size, f"{stack.gw_url}/files/{BUCKET}/{key}", 1800, stack.work / f"crowd-{i}.json")
                check_upload(t, size, f"crowd upload {i}", gateway=True)
                results[i] = t
            except Exception as exc:
                results[i] = exc

        with Profiler(stack, args, "crowd-upload", r == 0), RssPoller(pid) as poll, CpuMeter(stack, "s3gate") as meter:
            t0 = time.monotonic()
            run_watched(stack, args, [lambda i=i: one(i) for i in range(n)], f"{n} concurrent uploads")
            wall = time.monotonic() - t0
        ok = 0
        if not all(isinstance(res, Transfer) for res in results):
            tb = stack.first_gateway_traceback()
            if tb:
                log("  first error in the gateway's log:\n" + tb)
        for i, res in enumerate(results):
            if isinstance(res, Transfer):
                with contextlib.suppress(BenchError):
                    if stack.head_size(f"crowd/{r}-{i}") == size:
                        ok += 1
                        continue
                log(f"  crowd upload {i}: stored size differs")
            else:
                log(f"  crowd upload {i} failed: {res}")
        stack.delete([f"crowd/{r}-{i}" for i in range(n)])
        stack.vacuum()
        walls.append(wall)
        cpus.append(meter.result)
        peaks.append(poll.peak_kb * 1024 / 1e6)
        bases.append(poll.baseline_kb * 1024 / 1e6)
        oks.append(ok)
        aggs.append(n * size / wall / 1e6)
        log(
            f"  repeat {r + 1}: {ok}/{n} ok in {wall:.1f}s ({aggs[-1]:.0f} MB/s), "
            f"peak RSS {peaks[-1]:.0f} MB, baseline {bases[-1]:.0f} MB"
        )
    budget_mb = budget / 1e6
    limits = [b + budget_mb for b in bases]
    passed = all(p <= lim for p, lim in zip(peaks, limits, strict=True)) and all(o == n for o in oks)
    rows = [
        f"### 3. {n} concurrent {size_label(size)} uploads through s3gate",
        "",
        "| succeeded | wall s (median) | aggregate MB/s | peak RSS MB (median) | runs | baseline MB | "
        "budget MB | budget + baseline MB | within | cores: client / proxy / store / softirq / other |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---|",
        f"| {', '.join(f'{o}/{n}' for o in oks)} | {fmt(med(walls), 1)} | {fmt(med(aggs))} | {fmt(med(peaks))} | "
        f"{fmt_runs(peaks)} | {fmt(med(bases))} | {fmt(budget_mb)} | {fmt(med(limits))} | "
        f"{'yes' if passed else 'NO'} | {cpu_label(cpus)} |",
        "",
        f"`S3GATE_UPLOAD_MEMORY_BUDGET={budget // MiB}MiB`, `S3GATE_PART_SIZE=16MiB`; each upload is "
        "a generator piped into its own `curl -T -` with a Content-Length; the worker is restarted and "
        "warmed before each repeat (baseline = its RSS then). Every object's stored size is checked.",
        "",
    ]
    return rows


# ---------------------------------------------------------------- section 4
async def small_phase(
    session: Any, reqs: list[tuple[str, str, dict[str, str], bytes]], conc: int, expect_len: int | None
) -> float:
    sem = asyncio.Semaphore(conc)
    errors: list[str] = []

    async def one(method: str, url: str, headers: dict[str, str], body: bytes) -> None:
        async with sem:
            async with session.request(method, url, headers=headers, data=body or None) as resp:
                data = await resp.read()
                if resp.status not in (200, 201) or (expect_len is not None and len(data) != expect_len):
                    errors.append(f"{method} {url}: {resp.status} {len(data)} bytes {data[:200]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one(*r) for r in reqs))
    dt = time.perf_counter() - t0
    if errors:
        raise BenchError(f"{len(errors)} small-object requests failed, first: {errors[0]}")
    return dt


async def small_target(
    stack: Stack, args: argparse.Namespace, target: str, rep: int, n: int, size: int, conc: int, bodies: list[bytes]
):
    import aiohttp

    if target == "s3gate":
        base = f"{stack.gw_url}/files/{BUCKET}"
        put = [("PUT", f"{base}/small/{target}/{rep}/{i}", {}, bodies[i]) for i in range(n)]
        get = [("GET", f"{base}/small/{target}/{rep}/{i}?mode=proxy", {}, b"") for i in range(n)]
    else:
        base = f"{stack.s3_url if target == 'direct' else stack.ng_url}/{BUCKET}"
        put, get = [], []
        for i in range(n):  # signed before the clock starts: signing costs nobody
            url = f"{base}/small/{target}/{rep}/{i}"
            put.append(("PUT", url, sign("PUT", url, bodies[i]), bodies[i]))
            get.append(("GET", url, sign("GET", url), b""))
    proxy = {"direct": "", "nginx": "nginx", "s3gate": "s3gate"}[target]
    connector = aiohttp.TCPConnector(limit=conc)
    timeout = aiohttp.ClientTimeout(total=300)
    prof = target == "s3gate" and rep == 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        with Profiler(stack, args, "small-put", prof), CpuMeter(stack, proxy) as mp:
            t_put = await small_phase(session, put, conc, None)
        with Profiler(stack, args, "small-get", prof), CpuMeter(stack, proxy) as mg:
            t_get = await small_phase(session, get, conc, size)
    return n / t_put, n / t_get, mp.result, mg.result


def section_small(stack: Stack, args: argparse.Namespace, gw: bool) -> list[str]:
    n, size, conc = args.small_count, args.small_size, args.small_conc
    targets = ["direct", "nginx"] + (["s3gate"] if gw else [])
    rng = random.Random(4)
    bodies = [rng.randbytes(size) for _ in range(n)]
    puts: dict[str, list[float]] = {t: [] for t in targets}
    gets: dict[str, list[float]] = {t: [] for t in targets}
    cpu_p: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    cpu_g: dict[str, list[dict[str, float]]] = {t: [] for t in targets}

    async def main() -> None:
        # warm-up round, not counted
        for t in targets:
            await small_target(stack, args, t, -1, min(n, 64), size, conc, bodies)
        for r in range(args.repeat):
            wait_idle(f"section 4 repeat {r + 1}")
            for t in rotate(targets, r):
                p, g, cp, cg = await small_target(stack, args, t, r, n, size, conc, bodies)
                puts[t].append(p)
                gets[t].append(g)
                cpu_p[t].append(cp)
                cpu_g[t].append(cg)
                log(f"  repeat {r + 1}: {t}: {p:.0f} PUT/s, {g:.0f} GET/s")

    asyncio.run(asyncio.wait_for(main(), 900))
    for t in targets:
        stack.delete([f"small/{t}/{r}/{i}" for r in range(-1, args.repeat) for i in range(n if r >= 0 else min(n, 64))])

    rows = [
        f"### 4. Small objects: {n} x {size_label(size)} PUT then GET, {conc} in flight (one aiohttp client)",
        "",
        "| path | PUT/s (median) | runs | ratio | GET/s (median) | runs | ratio | "
        "cores PUT: client / proxy / store / softirq / other | cores GET |",
        "|---|---:|---|---:|---:|---|---:|---|---|",
    ]
    for t in targets:
        rp = med([a / b for a, b in zip(puts[t], puts["direct"], strict=True)])
        rg = med([a / b for a, b in zip(gets[t], gets["direct"], strict=True)])
        rows.append(
            f"| {t} | {fmt(med(puts[t]))} | {fmt_runs(puts[t])} | {rp:.2f} | {fmt(med(gets[t]))} | "
            f"{fmt_runs(gets[t])} | {rg:.2f} | {cpu_label(cpu_p[t])} | {cpu_label(cpu_g[t])} |"
        )
    rows += [
        "",
        "Direct and nginx requests carry SigV4 headers (botocore's signer, payload hash included), computed "
        "before timing; s3gate runs with `S3GATE_AUTH=0`, GET in proxy mode.",
        "",
    ]
    return rows


# ---------------------------------------------------------------- main
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (64 MiB instead of 1 GiB, no 5 GiB, 32 x 32 MiB)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per figure; medians are reported (default 3)")
    ap.add_argument("--only", default="1,2,3,4", help="sections to run, e.g. 1,4")
    ap.add_argument("--budget", default="256MiB", help="S3GATE_UPLOAD_MEMORY_BUDGET for the gateway (default 256MiB)")
    ap.add_argument(
        "--nginx-workers", default="1", help="nginx worker_processes (default 1, like the one gunicorn worker)"
    )
    ap.add_argument(
        "--nginx-keepalive",
        type=int,
        default=0,
        help="upstream keepalive connections for nginx (default 0: plain proxy_pass)",
    )
    ap.add_argument(
        "--gw-workers",
        type=int,
        default=1,
        help="gunicorn workers (default 1; sections 2 and 3 measure one worker and need 1)",
    )
    ap.add_argument("--no-gateway", action="store_true", help="measure only direct and nginx")
    ap.add_argument(
        "--out", default=str(HERE / "results.md"), help="Markdown output (default bench/results.md; '' for none)"
    )
    ap.add_argument("--small-count", type=int, default=400, help="objects in the small-object test (default 400)")
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=120,
        metavar="SECONDS",
        help="before each repeat, wait up to this long for other jobs to leave the CPU idle (default 120; 0 = don't)",
    )
    ap.add_argument(
        "--stall-timeout",
        type=float,
        default=120,
        metavar="SECONDS",
        help="fail when the gateway worker reads nothing for this long during an upload (default 120)",
    )
    ap.add_argument(
        "--stall-signal",
        default="",
        metavar="NAME",
        help="signal sent to the worker when a stall is detected, for a diagnostics hook (e.g. USR1)",
    )
    ap.add_argument(
        "--gw-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway (repeatable), e.g. MALLOC_ARENA_MAX=2 or S3GATE_PARTS_IN_FLIGHT=3",
    )
    ap.add_argument(
        "--profile",
        default="",
        metavar="DIR",
        help="py-spy record the gateway worker during its first measured run of each kind into DIR",
    )
    ap.add_argument(
        "--py-spy", default=shutil.which("py-spy") or str(BIN / "py-spy"), help="py-spy binary for --profile"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) at exit")
    ap.add_argument(
        "--time-limit", type=float, default=0, help="abort after this many seconds (default 900 quick, 3600 full)"
    )
    a = ap.parse_args(argv)
    a.sections = {int(x) for x in a.only.split(",") if x.strip()}
    a.budget = parse_size(a.budget)
    a.gw_extra = dict(x.split("=", 1) for x in a.gw_env)
    if a.gw_workers != 1 and a.sections & {2, 3}:
        ap.error("--gw-workers other than 1 only with --only 1,4 (RSS is measured on one worker)")
    if a.profile and not os.path.exists(a.py_spy):
        ap.error(f"--profile needs py-spy (pip install py-spy), not found at {a.py_spy}")
    if a.quick:
        a.big, a.rss_sizes, a.crowd, a.crowd_size = 64 * MiB, [16 * MiB, 100 * MiB], 32, 32 * MiB
    else:
        a.big, a.rss_sizes, a.crowd, a.crowd_size = 1 * GiB, [100 * MiB, 1 * GiB, 5 * GiB], 32, 256 * MiB
    a.small_size, a.small_conc = 64 * KiB, 32
    a.time_limit = a.time_limit or (900 if a.quick else 3600)
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    return a


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise SystemExit(f"bad size {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": 1024 * GiB}[m.group(2)])


def versions() -> str:
    out = [f"Python {platform.python_version()}", f"{os.cpu_count()} cores", f"Linux {platform.release()}"]
    with contextlib.suppress(Exception):
        out.append("curl " + subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split()[1])
    with contextlib.suppress(Exception):
        v = subprocess.run([shutil.which("nginx") or "nginx", "-v"], capture_output=True, text=True).stderr.strip()
        out.append(v.split(": ")[-1].replace("/", " "))
    with contextlib.suppress(Exception):
        v = subprocess.run([str(find_bin("weed")), "version"], capture_output=True, text=True).stdout
        out.append("SeaweedFS " + re.search(r"\b(\d+\.\d+)\b", v).group(1))
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("aiohttp", "aiobotocore", "gunicorn"):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{pkg} {version(pkg)}")
    return ", ".join(out)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_gen"]:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # reader gone: just stop
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        generate(int(argv[1]))
        return 0
    args = parse_args(argv)
    WAIT_IDLE["max"] = args.wait_idle
    cmd = ".venv/bin/python bench/run.py" + ("" if not argv else " " + shlex.join(argv))

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise BenchError(f"time limit of {args.time_limit:.0f}s reached")

    signal.signal(signal.SIGINT, on_signal)  # also when started in the background with SIGINT ignored
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.time_limit))

    work = Path(tempfile.mkdtemp(prefix="s3gate-bench-"))
    stack = Stack(work, args.quick, args.nginx_workers, args.nginx_keepalive, gw_nworkers=args.gw_workers)
    rc = 1
    try:
        gw = not args.no_gateway
        if gw:
            ok, why = gateway_importable()
            if not ok:
                log(f"WARNING: s3gate.app does not import ({why}); measuring direct and nginx only")
                gw = False
        stack.start_weed()
        stack.start_nginx()
        if gw:
            stack.start_gateway(args.budget, args.gw_extra)
            stack.warm_gateway()
        started = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        rows: list[str] = []
        if 1 in args.sections:
            rows += section_big(stack, args, gw)
            stack.vacuum()
        if 2 in args.sections and gw:
            rows += section_rss(stack, args)
        if 3 in args.sections and gw:
            rows += section_crowd(stack, args)
        if 4 in args.sections:
            if gw and (2 in args.sections or 3 in args.sections):
                stack.restart_gateway(args)
            rows += section_small(stack, args, gw)
        orphans = stack.open_multipart_uploads()
        header = [
            "## Benchmark: s3gate vs. nginx vs. SeaweedFS direct",
            "",
            f"Command: `{cmd}` ({started}; repeats per figure: {args.repeat}; medians shown).",
            "",
            f"Machine: {versions()}. Everything on 127.0.0.1: client, proxy and store share the cores.",
            "",
            f"s3gate source fingerprint: {', '.join(stack.code_seen) or 'n/a'}"
            + (" (CHANGED during the run: figures mix versions)" if len(stack.code_seen) > 1 else "")
            + " (sha256 of s3gate/**/*.py). "
            f"s3gate: gunicorn, `aiohttp.GunicornWebWorker`, {args.gw_workers} worker(s), "
            + ", ".join(
                f"`{k}={v}`"
                for k, v in sorted(stack.gw_env.items())
                if "KEY" not in k and "DIR" not in k and k != "S3GATE_CONFIG"
            )
            + f". nginx {args.nginx_workers} worker(s), upstream keepalive {args.nginx_keepalive or 'off'}. "
            "'cores used' = CPU seconds / wall seconds of each party during the transfer "
            "(client = curl + body generator, or the Python client; softirq = kernel network processing not "
            "charged to any process, mostly loopback TCP; other = every other process on the machine, "
            "which should be near 0). "
            f"Load average at start: {load0}.",
            "",
        ]
        errors = stack.gateway_errors()
        footer = [
            f"Multipart uploads left open in the bucket at the end: {orphans}. "
            f"ERROR entries in the gateway's log: {len(errors)}"
            + (f" (first: `{errors[0][:200]}`)" if errors else "")
            + ".",
            "",
        ]
        text = "\n".join(header + rows + footer)
        print("\n" + text)
        if args.out:
            Path(args.out).write_text(text)
            log(f"written to {args.out}")
        rc = 0
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}); cleaning up")
        rc = 130
    except BenchError as exc:
        log(f"FAILED: {exc}")
        for name in ("gunicorn.log", "weed.log", "nginx/error.log"):
            p = work / name
            if p.exists():
                tail = p.read_text(errors="replace").splitlines()[-15:]
                if tail:
                    log(f"--- tail of {name}:\n" + "\n".join(tail))
        rc = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish cleaning up even on a second Ctrl-C
        t_clean = time.monotonic()
        PROCS.stop_all()
        stack.remove_sockets()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"cleaned up in {time.monotonic() - t_clean:.1f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
