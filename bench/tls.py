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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common, tests.integration.test_nginx

from bench.common import (
    PROCS,
    Gateway,
    children_cpu,
    machine_busy,
    parse_size,
    random_file,
    start_store,
    tree_cpu,
    versions,
    wait_idle,
)
from s3gate.certs import self_signed
from s3gate.private import write_private
from tests.integration.test_nginx import nginx_binary, write_config

WHO = ("gateway", "nginx", "store", "curl", "other")


@dataclass
class Target:
    name: str
    base: str
    cacert: Path | None
    gateway: int  # gunicorn's master: its tree does the gateway's work
    nginx: int | None = None
    curl_args: tuple[str, ...] = ()
    runs: list[dict[str, float]] = field(default_factory=list)


def start_nginx(root: Path, upstream: str) -> tuple[subprocess.Popen, str, Path]:
    """Debian's nginx with the shipped site in front of UPSTREAM (http://127.0.0.1:PORT)."""
    conf = root / "nginx"
    _, https_port = write_config(conf, int(upstream.rsplit(":", 1)[1]))
    with open(conf / "stderr.log", "wb") as log:
        proc = PROCS.popen(
            "nginx", [nginx_binary(), "-p", str(conf), "-c", str(conf / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=log,
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


def measure(t: Target, store: int, src: Path, size: int, digest: str, n: int) -> dict[str, float]:
    key = f"/files/bench/tls-{n}-{t.name.replace(' ', '-').replace('/', '')}.bin"
    out: dict[str, float] = {}
    for way, args in (
        ("up", ("-T", str(src), "-w", "\n%{size_upload} %{speed_upload} %{time_total}")),
        ("down", ("-o", "/dev/null", "-w", "\n%{size_download} %{speed_download} %{time_total}")),
    ):
        before = tree_cpu(t.gateway), tree_cpu(t.nginx), tree_cpu(store), children_cpu(), machine_busy()[0]
        got = curl(t.base, key, t.cacert, "--fail", *t.curl_args, *args)
        after = tree_cpu(t.gateway), tree_cpu(t.nginx), tree_cpu(store), children_cpu(), machine_busy()[0]
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


def gateway(root: Path, store, tls: tuple[Path, Path] | None) -> Gateway:
    """One worker, part_size 16 MiB, nginx trusted for the plain one; direct TLS with tls."""
    env = {"S3GATE_PART_SIZE": "16MiB", "S3GATE_LOG_LEVEL": "warning", "S3GATE_TRUSTED_PROXIES": "127.0.0.1"}
    if tls:
        env.update(S3GATE_TLS_CERT=str(tls[0]), S3GATE_TLS_KEY=str(tls[1]))
    name = "gw-tls" if tls else "gw-plain"
    return Gateway(root, store, env=env, name=name, cacert=tls[0] if tls else None).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1GiB", help="bytes to move each way (suffixes: MiB, GiB)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wait-idle", type=float, default=60, help="seconds to wait for a quiet machine before each")
    args = parser.parse_args()
    size = parse_size(args.size)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="s3gate-bench-tls-") as tmp:
        root = Path(tmp)
        src = root / "src.bin"
        digest = hashlib.sha256()
        random_file(src, size, digest=digest)
        cert, key = self_signed(["127.0.0.1"])
        tls = (root / "cert.pem", root / "key.pem")
        tls[0].write_bytes(cert)
        write_private(tls[1], key)
        store = None
        try:
            store = start_store(root / "seaweedfs")
            plain = gateway(root, store, None)
            direct = gateway(root, store, tls)
            nginx, nginx_base, nginx_conf = start_nginx(root, plain.base)
            targets = [
                Target("plain HTTP", plain.base, None, plain.master.pid),
                Target("direct TLS", direct.base, tls[0], direct.master.pid),
                Target(
                    "nginx TLS, HTTP/1.1",
                    nginx_base,
                    nginx_conf / "cert.pem",
                    plain.master.pid,
                    nginx.pid,
                    ("--http1.1",),
                ),
                Target(
                    "nginx TLS, HTTP/2", nginx_base, nginx_conf / "cert.pem", plain.master.pid, nginx.pid, ("--http2",)
                ),
            ]
            for i in range(args.repeat):
                for t in targets:
                    wait_idle(args.wait_idle, t.name)
                    t.runs.append(measure(t, store.process.pid, src, size, digest.hexdigest(), i))
                    r = t.runs[-1]
                    print(f"  {t.name} #{i + 1}: up {r['up']:.0f} MB/s, down {r['down']:.0f} MB/s", flush=True)
            spooled = (nginx_conf / "error.log").read_text().count("buffered to a temporary file")
            if spooled:
                sys.exit(f"nginx spooled {spooled} request body(ies) to disk: the site does not stream")
        finally:
            PROCS.stop_all()
            if store is not None:
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
        f"\nMachine: {versions()}; curl, nginx, gunicorn and SeaweedFS share the cores. nginx spooled nothing to disk."
    )
    print(f"Load average at start: {load}; at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
