"""Plain HTTP vs direct TLS vs nginx TLS: 1 GiB upload and download MB/s and CPU through s3gate, in one run.

    .venv/bin/python bench/tls.py                   # 1 GiB, median of 3
    .venv/bin/python bench/tls.py --size 256MiB --repeat 5

Starts its own SeaweedFS (s3gate.embedded) and two gateways exactly as
`s3gate serve` runs them (s3gate.launcher.gunicorn_argv, one worker each):
one plain, one with tls_cert/tls_key from s3gate.certs. In front of the plain
one runs Debian's nginx with the shipped site, config/nginx/s3gate.conf,
rendered as tests/integration/test_nginx.py renders it (same certificate as
the gateway's own TLS). curl uploads one random file (PUT /files/bench/KEY)
and downloads it to /dev/null, to each target in turn within each repeat:
plain HTTP, direct TLS, nginx over HTTP/1.1 and over HTTP/2 (what curl picks
for https when it may). Every transfer is checked (status, bytes, the SHA-256
the gateway reports); nginx must not have spooled a body to disk. CPU is
read from /proc for the gateway serving the transfer (gunicorn and its
worker), nginx and SeaweedFS, as cores (CPU seconds per wall second).
Everything runs on 127.0.0.1 in a temporary directory that is removed at exit.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.integration.test_nginx

from s3gate import settings as settings_mod
from s3gate.certs import self_signed
from s3gate.embedded import Credentials, SeaweedFS, free_port
from s3gate.launcher import gunicorn_argv
from s3gate.private import write_private
from tests.integration.test_nginx import nginx_binary, write_config

MiB = 1024 * 1024
WHO = ("gateway", "nginx", "store", "curl", "other")


@dataclass
class Target:
    name: str
    base: str
    cacert: Path | None
    gateway: psutil.Process  # gunicorn's master: its tree does the gateway's work
    nginx: psutil.Process | None = None
    curl_args: tuple[str, ...] = ()
    runs: list[dict[str, float]] = field(default_factory=list)


def cpu(proc: psutil.Process | None) -> float:
    """CPU seconds used so far by PROC and its children alive now (gunicorn's and nginx's workers live on)."""
    if proc is None:
        return 0.0
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has spent in tasks so far (user, nice, system, steal; not irq/softirq)."""
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + steal) / CLK_TCK


def curl_cpu() -> float:
    """CPU seconds of the finished children (every curl this script ran) so far."""
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def wait_idle(limit: float) -> None:
    """Wait up to LIMIT seconds for the machine to go quiet (< 0.3 cores busy over a second): others' work skews."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = machine_busy()
        time.sleep(1)
        if machine_busy() - before < 0.3:
            return


def gateway(root: Path, store: SeaweedFS, tls: tuple[Path, Path] | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3GATE_")}
    env.update(
        S3GATE_AUTH="0",
        S3GATE_PORT=str(port),
        S3GATE_WORKERS="1",
        S3GATE_DATA_DIR=str(root / f"gw-{port}"),
        S3GATE_S3_ENDPOINT=store.endpoint,
        S3GATE_S3_ACCESS_KEY=store.credentials.access_key,
        S3GATE_S3_SECRET_KEY=store.credentials.secret_key,
        S3GATE_PART_SIZE="16MiB",
        S3GATE_LOG_LEVEL="warning",
        S3GATE_TRUSTED_PROXIES="127.0.0.1",  # nginx, for the plain gateway behind it
    )
    if tls:
        env.update(S3GATE_TLS_CERT=str(tls[0]), S3GATE_TLS_KEY=str(tls[1]))
    settings = settings_mod.load(env, use_file=False)
    with open(root / f"gw-{port}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(gunicorn_argv(settings), env=env, stdout=log, stderr=log, start_new_session=True)
    scheme = "https" if tls else "http"
    base = f"{scheme}://127.0.0.1:{port}"
    wait_ready(base, tls[0] if tls else None, proc, root / f"gw-{port}.log")
    return proc, base


def start_nginx(root: Path, upstream: str) -> tuple[subprocess.Popen, str, Path]:
    """Debian's nginx with the shipped site in front of UPSTREAM (http://127.0.0.1:PORT)."""
    conf = root / "nginx"
    _, https_port = write_config(conf, int(upstream.rsplit(":", 1)[1]))
    with open(conf / "stderr.log", "wb") as log:
        proc = subprocess.Popen(
            [nginx_binary(), "-p", str(conf), "-c", str(conf / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip
    base = f"https://127.0.0.1:{https_port}"
    wait_ready(base, conf / "cert.pem", proc, conf / "error.log")
    return proc, base, conf


def wait_ready(base: str, cacert: Path | None, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while curl(base, "/readyz", cacert, "-o", "/dev/null", "-w", "%{http_code}") != "200":
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{base} did not start: {log.read_text()[-2000:] if log.exists() else ''}")
        time.sleep(0.2)


def curl(base: str, path: str, cacert: Path | None, *args: str) -> str:
    trust = ["--cacert", str(cacert)] if cacert else []
    done = subprocess.run(["curl", "-sS", *trust, *args, base + path], capture_output=True, text=True, check=False)
    return done.stdout


def measure(t: Target, store: psutil.Process, src: Path, size: int, digest: str, n: int) -> dict[str, float]:
    key = f"/files/bench/tls-{n}-{t.name.replace(' ', '-').replace('/', '')}.bin"
    out: dict[str, float] = {}
    for way, args in (
        ("up", ("-T", str(src), "-w", "\n%{size_upload} %{speed_upload} %{time_total}")),
        ("down", ("-o", "/dev/null", "-w", "\n%{size_download} %{speed_download} %{time_total}")),
    ):
        before = cpu(t.gateway), cpu(t.nginx), cpu(store), curl_cpu(), machine_busy()
        got = curl(t.base, key, t.cacert, "--fail", *t.curl_args, *args)
        after = cpu(t.gateway), cpu(t.nginx), cpu(store), curl_cpu(), machine_busy()
        body, _, stats = got.rpartition("\n")
        moved, speed, wall = stats.split()
        if moved != str(size) or (way == "up" and digest not in body):
            sys.exit(f"{way} {t.name} {t.base}{key} failed: {got[-500:]}")
        out[way] = float(speed) / 1e6
        used = [(a - b) / float(wall) for a, b in zip(after, before, strict=True)]
        for who, cores in zip(WHO, used, strict=False):
            out[f"{way} {who}"] = cores
        # Everything else the machine did meanwhile: near 0 on a quiet machine, else the run is noisy.
        out[f"{way} other"] = max(0.0, used[-1] - sum(used[:-1]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1GiB", help="bytes to move each way (suffixes: MiB, GiB)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wait-idle", type=float, default=60, help="seconds to wait for a quiet machine before each")
    args = parser.parse_args()
    size = settings_mod._number(int, args.size)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="s3gate-bench-tls-") as tmp:
        root = Path(tmp)
        src = root / "src.bin"
        digest = hashlib.sha256()
        with open(src, "wb") as fh:
            for _ in range(0, size, 16 * MiB):
                chunk = os.urandom(min(16 * MiB, size - fh.tell()))
                digest.update(chunk)
                fh.write(chunk)
        cert, key = self_signed(["127.0.0.1"])
        tls = (root / "cert.pem", root / "key.pem")
        tls[0].write_bytes(cert)
        write_private(tls[1], key)
        creds = Credentials("bench" + secrets.token_hex(4), secrets.token_urlsafe(24))
        store = SeaweedFS(root / "seaweedfs", credentials=creds, buckets=("bench",))
        procs: list[subprocess.Popen] = []
        nginx_conf: Path | None = None
        try:
            store.start()
            weed = psutil.Process(store.process.pid)
            plain, plain_base = gateway(root, store, None)
            direct, direct_base = gateway(root, store, tls)
            nginx, nginx_base, nginx_conf = start_nginx(root, plain_base)
            procs += [nginx, direct, plain]
            gw_plain, gw_direct, ng = (psutil.Process(p.pid) for p in (plain, direct, nginx))
            targets = [
                Target("plain HTTP", plain_base, None, gw_plain),
                Target("direct TLS", direct_base, tls[0], gw_direct),
                Target("nginx TLS, HTTP/1.1", nginx_base, nginx_conf / "cert.pem", gw_plain, ng, ("--http1.1",)),
                Target("nginx TLS, HTTP/2", nginx_base, nginx_conf / "cert.pem", gw_plain, ng, ("--http2",)),
            ]
            for i in range(args.repeat):
                for t in targets:
                    wait_idle(args.wait_idle)
                    t.runs.append(measure(t, weed, src, size, digest.hexdigest(), i))
                    r = t.runs[-1]
                    print(f"  {t.name} #{i + 1}: up {r['up']:.0f} MB/s, down {r['down']:.0f} MB/s", flush=True)
            spooled = (nginx_conf / "error.log").read_text().count("buffered to a temporary file")
            if spooled:
                sys.exit(f"nginx spooled {spooled} request body(ies) to disk: the site does not stream")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            store.stop(timeout=5)
    print(f"\n{args.size} each way through s3gate (1 gunicorn worker), curl on 127.0.0.1, median of {args.repeat}.")
    print(
        "Cores = CPU seconds per wall second during the transfer (gateway: gunicorn + worker; store: SeaweedFS;"
        " other: the rest of the machine, near 0 when it was quiet). MB = 10^6 bytes.\n"
    )
    cols = " / ".join(WHO)
    print(f"| target | upload MB/s | cores: {cols} | download MB/s | cores: {cols} |")
    print("| --- | ---: | --- | ---: | --- |")

    def med(t: Target, k: str) -> float:
        return statistics.median(r[k] for r in t.runs)

    base_up, base_down = med(targets[0], "up"), med(targets[0], "down")
    for t in targets:
        row = [t.name]
        for way, base in (("up", base_up), ("down", base_down)):
            ratio = "" if t is targets[0] else f" ({med(t, way) / base:.2f}×)"
            row.append(f"{med(t, way):,.0f}{ratio}")
            row.append(" / ".join(f"{med(t, f'{way} {who}'):.2f}" for who in WHO))
        print("| " + " | ".join(row) + " |")
    print(
        f"\n{os.cpu_count()} CPU cores; curl, nginx, gunicorn and SeaweedFS share them. nginx spooled nothing to disk."
    )
    print(f"Load average at start: {load}; at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
