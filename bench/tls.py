"""Direct TLS vs plain HTTP: 1 GiB upload and download MB/s through s3gate, in the same run.

    .venv/bin/python bench/tls.py                   # 1 GiB, median of 3
    .venv/bin/python bench/tls.py --size 256MiB --repeat 5

Starts its own SeaweedFS (s3gate.embedded) and two gateways exactly as
`s3gate serve` runs them (s3gate.launcher.gunicorn_argv, one worker each):
one plain, one with tls_cert/tls_key from s3gate.certs. curl uploads one
random file (PUT /files/bench/KEY) and downloads it to /dev/null; plain and
TLS alternate within each repeat. Every transfer is checked (status, bytes,
the SHA-256 the gateway reports). Everything runs on 127.0.0.1 in a temporary
directory that is removed at exit.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from s3gate import settings as settings_mod
from s3gate.certs import self_signed
from s3gate.embedded import Credentials, SeaweedFS, free_port
from s3gate.launcher import gunicorn_argv
from s3gate.private import write_private

MiB = 1024 * 1024


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
    )
    if tls:
        env.update(S3GATE_TLS_CERT=str(tls[0]), S3GATE_TLS_KEY=str(tls[1]))
    settings = settings_mod.load(env, use_file=False)
    with open(root / f"gw-{port}.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(gunicorn_argv(settings), env=env, stdout=log, stderr=log, start_new_session=True)
    scheme = "https" if tls else "http"
    base = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while curl(base, "/readyz", tls, "-o", "/dev/null", "-w", "%{http_code}") != "200":
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"gateway {base} did not start: {(root / f'gw-{port}.log').read_text()[-2000:]}")
        time.sleep(0.2)
    return proc, base


def curl(base: str, path: str, tls: tuple[Path, Path] | None, *args: str) -> str:
    trust = ["--cacert", str(tls[0])] if tls else []
    done = subprocess.run(["curl", "-sS", *trust, *args, base + path], capture_output=True, text=True, check=False)
    return done.stdout


def measure(base: str, tls, src: Path, size: int, digest: str, n: int) -> tuple[float, float]:
    key = f"/files/bench/tls-{n}.bin"
    out = curl(base, key, tls, "--fail", "-T", str(src), "-w", "\n%{speed_upload}")
    body, _, speed_up = out.rpartition("\n")
    if digest not in body:
        sys.exit(f"upload to {base} failed: {out[-500:]}")
    out = curl(base, key, tls, "--fail", "-o", "/dev/null", "-w", "%{size_download} %{speed_download}")
    got, _, speed_down = out.partition(" ")
    if got != str(size):
        sys.exit(f"download from {base} returned {got} bytes, not {size}")
    return float(speed_up) / 1e6, float(speed_down) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1GiB", help="bytes to move each way (suffixes: MiB, GiB)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = settings_mod._number(int, args.size)
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
        try:
            store.start()
            targets = {}
            for name, cfg in (("plain HTTP", None), ("direct TLS", tls)):
                proc, base = gateway(root, store, cfg)
                procs.append(proc)
                targets[name] = (base, cfg)
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            for i in range(args.repeat):
                for name, (base, cfg) in targets.items():
                    results[name].append(measure(base, cfg, src, size, digest.hexdigest(), i))
                    print(
                        f"  {name} #{i + 1}: up {results[name][-1][0]:.0f} MB/s, down {results[name][-1][1]:.0f} MB/s"
                    )
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            store.stop(timeout=5)
    print(f"\n{args.size} through s3gate (1 gunicorn worker), curl on 127.0.0.1, median of {args.repeat}:\n")
    print("| | upload MB/s | download MB/s |\n| --- | ---: | ---: |")
    for name, runs in results.items():
        up, down = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"| {name} | {up:.0f} | {down:.0f} |")
    print(f"\n{os.cpu_count()} CPU cores; curl, gunicorn and SeaweedFS share them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
