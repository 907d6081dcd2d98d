"""Folder archives: zip and tar of N x 1 MiB objects against a plain proxied download of the same bytes.

    .venv/bin/python bench/archives.py            # 200 x 1 MiB, 3 repeats
    .venv/bin/python bench/archives.py --count 1000 --repeat 5

Starts its own SeaweedFS (s3gate.embedded) and one gunicorn worker (the
launcher's own argv) on loopback ports in a temporary directory, uploads the
objects with `curl --parallel --aws-sigv4`, then times with curl (to
/dev/null) ``?archive=zip``, ``?archive=tar`` and a GET of one object of the
same total size, and reads the worker's peak RSS (VmHWM, reset before each
run). Prints a Markdown table. Everything started is stopped at exit.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from s3gate import settings as settings_mod
from s3gate.embedded import Credentials, SeaweedFS, free_port
from s3gate.launcher import gunicorn_argv

MiB = 1024 * 1024
BUCKET = "bench"


def upload(seaweed: SeaweedFS, objects: dict[str, Path], work: Path) -> None:
    seaweed.put_many(BUCKET, objects, work, timeout=1800)


def worker_pid(master: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed_get(url: str, pid: int) -> tuple[float, int, float]:
    """(MB/s, bytes, peak RSS MiB) of one curl GET to /dev/null."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
        capture_output=True, text=True, check=True, timeout=1800,
    )  # fmt: skip
    size, seconds = out.stdout.split()
    return int(size) / float(seconds) / 1e6, int(size), peak_rss_mib(pid)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the gateway exited at start")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("the gateway did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=200, help="objects of 1 MiB in the folder (default 200)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="s3gate-bench-archives-"))
    seaweed = SeaweedFS(
        work / "weed",
        credentials=Credentials("bench" + secrets.token_hex(4), secrets.token_urlsafe(24)),
        buckets=(BUCKET,),
    )
    gateway: subprocess.Popen | None = None
    try:
        seaweed.start()
        files = {}
        for i in range(args.count):
            path = work / "src" / f"{i:05d}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(os.urandom(MiB))
            files[f"folder/{i:05d}.bin"] = path
        one = work / "one.bin"
        with open(one, "wb") as fh:
            for p in files.values():
                fh.write(p.read_bytes())
        upload(seaweed, {**files, "single/all.bin": one}, work)

        port = free_port()
        settings = settings_mod.load(environ={}, use_file=False, host="127.0.0.1", port=port, workers=1)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("S3GATE_", "AWS_"))}
        cfg = work / "s3gate.toml"
        cfg.write_text("")
        env |= {
            "S3GATE_CONFIG": str(cfg),
            "S3GATE_S3_ENDPOINT": seaweed.endpoint,
            "S3GATE_S3_ACCESS_KEY": seaweed.credentials.access_key,
            "S3GATE_S3_SECRET_KEY": seaweed.credentials.secret_key,
            "S3GATE_AUTH": "0",
            "S3GATE_DATA_DIR": str(work / "gw-data"),
        }
        gateway = subprocess.Popen(
            gunicorn_argv(settings), env=env, stdout=subprocess.DEVNULL, stderr=open(work / "gw.log", "wb")
        )
        wait_port(port, gateway)
        pid = worker_pid(gateway.pid)
        base = f"http://127.0.0.1:{port}/files/{BUCKET}"
        runs = {
            "plain download (one object, same bytes)": f"{base}/single/all.bin",
            "?archive=tar": f"{base}/folder/?archive=tar",
            "?archive=zip": f"{base}/folder/?archive=zip",
        }
        timed_get(runs["?archive=zip"], pid)  # warm-up: imports, connections
        results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, url in runs.items():
                results[name].append(timed_get(url, pid))
        print(f"\n{args.count} x 1 MiB objects (random bytes), one worker, median of {args.repeat}\n")
        print("| what | MB/s | bytes sent | worker peak RSS (MiB) |")
        print("|---|---:|---:|---:|")
        for name, rs in results.items():
            speed = statistics.median(r[0] for r in rs)
            print(f"| {name} | {speed:.0f} | {rs[0][1]:,} | {max(r[2] for r in rs):.0f} |")
        return 0
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(30)
            except subprocess.TimeoutExpired:
                gateway.kill()
        seaweed.stop(timeout=5)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
