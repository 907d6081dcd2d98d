"""Section 4: small objects, PUT then GET at 32 in flight, one aiohttp client for the three targets."""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from bench.common import BUCKET, BenchError, log, wait_idle

from .measure import CpuMeter, Profiler
from .report import auth_label, cpu_label, fmt, fmt_runs, med, rotate, size_label
from .stack import Stack

Request = tuple[str, str, dict[str, str], bytes]


async def small_phase(session: Any, reqs: list[Request], conc: int, expect_len: int | None) -> float:
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
        auth = stack.gw.headers  # {} with auth off
        put = [("PUT", f"{base}/small/{target}/{rep}/{i}", auth, bodies[i]) for i in range(n)]
        get = [("GET", f"{base}/small/{target}/{rep}/{i}?mode=proxy", auth, b"") for i in range(n)]
    else:
        base = f"{stack.s3_url if target == 'direct' else stack.ng_url}/{BUCKET}"
        put, get = [], []
        for i in range(n):  # signed before the clock starts: signing costs nobody
            url = f"{base}/small/{target}/{rep}/{i}"
            put.append(("PUT", url, stack.sign("PUT", url, bodies[i]), bodies[i]))
            get.append(("GET", url, stack.sign("GET", url), b""))
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
            wait_idle(args.wait_idle, f"section 4 repeat {r + 1}")
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
        f"before timing; s3gate runs with {auth_label(args.auth)}, GET in proxy mode.",
        "",
    ]
    return rows
