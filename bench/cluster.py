"""One gateway vs two behind nginx: the same small-object load, on one PostgreSQL and one SeaweedFS.

    .venv/bin/python bench/cluster.py                    # 400 x 64 KiB PUT then GET, 32 in flight, median of 3
    .venv/bin/python bench/cluster.py --count 1000 --repeat 5

Starts everything on 127.0.0.1 in a temporary directory removed at exit: a
throwaway PostgreSQL (tests/postgres.py), SeaweedFS (s3gate.embedded), two
gateways started as tests/integration/test_cluster.py starts them (`s3gate
serve`, gunicorn with --workers each, its own data directory, the same
users_db URL and secret_file), and two nginx with the shipped site
(config/nginx/s3gate.conf, TLS): one in front of gateway A alone, one
round-robin over A and B. Authentication is on: every request carries an API
token, checked against PostgreSQL as in production.

One aiohttp client puts COUNT random objects, then gets them back (checking
status and length), with 32 requests in flight, against three targets in an
order that rotates from one repeat to the next: A directly (plain HTTP), A
behind nginx, A and B behind nginx. Cores = CPU seconds per wall second of
each party (client: this script; gateways: every `s3gate serve` tree;
other: the rest of the machine, near 0 when it was quiet). Prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.*, bench.common

from bench.common import (
    BUCKET,
    KiB,
    clean_env,
    free_port,
    machine_busy,
    make_token,
    start_store,
    tree_cpu,
    versions,
    wait_idle,
)
from s3gate.private import write_private
from tests.integration.test_cluster import Instance, start_nginx
from tests.postgres import PostgresServer

WHO = ("client", "gateways", "nginx", "store", "postgres", "other")


@dataclass
class Target:
    name: str
    base: str
    gateways: list[Instance]
    nginx: int | None = None  # its master's pid
    cacert: Path | None = None  # the nginx's own self-signed certificate
    puts: list[float] = field(default_factory=list)
    gets: list[float] = field(default_factory=list)
    cores: dict[str, list[float]] = field(default_factory=dict)


def postgres_pid(server: PostgresServer) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


async def load(target: Target, tag: str, bodies: list[bytes], token: str, conc: int) -> tuple[float, float]:
    """PUT every body, then GET each back; (PUT/s, GET/s). Any wrong status or length stops the run."""
    import aiohttp

    tls = ssl.create_default_context(cafile=str(target.cacert)) if target.cacert else None
    headers = {"Authorization": f"Bearer {token}"}
    urls = [f"{target.base}/files/{BUCKET}/small/{tag}/{i}" for i in range(len(bodies))]
    sem = asyncio.Semaphore(conc)
    errors: list[str] = []

    async def one(session: aiohttp.ClientSession, method: str, url: str, body: bytes | None, size: int) -> None:
        async with sem, session.request(method, url, data=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status not in (200, 201) or (method == "GET" and len(data) != size):
                errors.append(f"{method} {url}: {resp.status} {len(data)} bytes {data[:200]!r}")

    connector = aiohttp.TCPConnector(limit=conc, ssl=tls if tls is not None else True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:
        rates = []
        for method in ("PUT", "GET"):
            start = time.perf_counter()
            await asyncio.gather(
                *(
                    one(session, method, url, body if method == "PUT" else None, len(body))
                    for url, body in zip(urls, bodies, strict=True)
                )
            )
            rates.append(len(bodies) / (time.perf_counter() - start))
            if errors:
                sys.exit(
                    f"{len(errors)} of {len(bodies)} {method} requests to {target.name} failed, first: {errors[0]}"
                )
    return rates[0], rates[1]


def counters(target: Target, store: int, postgres: int) -> tuple[float, ...]:
    gateways = sum(tree_cpu(g.serve.pid) for g in target.gateways if g.serve is not None)
    return time.process_time(), gateways, tree_cpu(target.nginx), tree_cpu(store), tree_cpu(postgres), machine_busy()[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=400, help="objects per target and repeat (default 400)")
    parser.add_argument("--size", type=int, default=64 * KiB, help="bytes per object (default 65536)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per gateway (default 2)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--wait-idle", type=float, default=60, help="seconds to wait for a quiet machine before each")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="s3gate-bench-cluster-"))
    postgres = PostgresServer(root / "postgres")
    store = None
    gateways: list[Instance] = []
    nginxes: list[subprocess.Popen] = []
    try:
        postgres.start()
        store = start_store(root / "seaweedfs")
        write_private(root / "cluster.secret", secrets.token_hex(32).encode())
        env = clean_env()
        env.update(
            S3GATE_USERS_DB=postgres.create_database(),
            S3GATE_SECRET_FILE=str(root / "cluster.secret"),
            S3GATE_S3_ENDPOINT=store.endpoint,
            S3GATE_S3_ACCESS_KEY=store.credentials.access_key,
            S3GATE_S3_SECRET_KEY=store.credentials.secret_key,
            S3GATE_WORKERS=str(args.workers),
            S3GATE_TRUSTED_PROXIES="127.0.0.1",
            S3GATE_AUDIT_LOG="-",
        )
        token = make_token({**env, "S3GATE_DATA_DIR": str(root / "cli-data")})
        gateways = [Instance(name, free_port(), root / f"data-{name}", env) for name in ("a", "b")]
        for g in gateways:
            g.start()
        for g in gateways:
            g.wait_ready()
        alone, alone_base = start_nginx(root / "nginx-a", [gateways[0].port])
        both, both_base = start_nginx(root / "nginx-ab", [g.port for g in gateways])
        nginxes += [alone, both]
        targets = [
            Target("one gateway, direct (HTTP)", gateways[0].base, gateways[:1]),
            Target(
                "one gateway behind nginx (TLS)",
                alone_base,
                gateways[:1],
                alone.pid,
                root / "nginx-a" / "cert.pem",
            ),
            Target(
                "two gateways behind nginx (TLS)",
                both_base,
                gateways,
                both.pid,
                root / "nginx-ab" / "cert.pem",
            ),
        ]
        weed, pg = store.process.pid, postgres_pid(postgres)
        bodies = [os.urandom(args.size) for _ in range(args.count)]
        for t in targets:  # warm-up: connections, imports, the token's first lookups; not counted
            asyncio.run(load(t, f"warm-{t.name[:3]}", bodies[:64], token, args.concurrency))
        for r in range(args.repeat):
            for t in targets[r % len(targets) :] + targets[: r % len(targets)]:
                wait_idle(args.wait_idle, t.name)
                before = counters(t, weed, pg)
                start = time.perf_counter()
                put, get = asyncio.run(load(t, f"{r}-{targets.index(t)}", bodies, token, args.concurrency))
                wall = time.perf_counter() - start
                used = [(a - b) / wall for a, b in zip(counters(t, weed, pg), before, strict=True)]
                t.puts.append(put)
                t.gets.append(get)
                shares = dict(zip(WHO, used, strict=False))
                shares["other"] = max(0.0, used[-1] - sum(used[1:-1]) - used[0])
                for who, cores in shares.items():
                    t.cores.setdefault(who, []).append(cores)
                print(f"  #{r + 1} {t.name}: {put:,.0f} PUT/s, {get:,.0f} GET/s", flush=True)
    finally:
        for proc in nginxes:
            proc.terminate()
            proc.wait(10)
        for g in gateways:
            g.terminate()
        for g in gateways:
            g.stop()
        if store is not None:
            store.stop(timeout=5)
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"\n{args.count} x {args.size // KiB} KiB PUT then GET, {args.concurrency} in flight, one aiohttp client, "
        f"{args.workers} gunicorn workers per gateway, auth on (API token, PostgreSQL), median of {args.repeat}.\n"
    )
    print(f"| target | PUT/s | GET/s | cores: {' / '.join(WHO)} |")
    print("| --- | ---: | ---: | --- |")
    first_put, first_get = statistics.median(targets[0].puts), statistics.median(targets[0].gets)
    for t in targets:
        put, get = statistics.median(t.puts), statistics.median(t.gets)
        cores = " / ".join(f"{statistics.median(t.cores[w]):.2f}" for w in WHO)
        print(f"| {t.name} | {put:,.0f} ({put / first_put:.2f}×) | {get:,.0f} ({get / first_get:.2f}×) | {cores} |")
    print(f"\nMachine: {versions()}; client, nginx, gateways, SeaweedFS and PostgreSQL share the cores.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
