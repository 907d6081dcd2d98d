"""Section 3: 32 concurrent uploads through s3gate; all must succeed, peak worker RSS within budget + baseline."""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

from bench.common import BUCKET, BenchError, MiB, RssPoller, log, wait_idle

from .measure import CpuMeter, Profiler, Transfer, check_upload, curl_generated, run_watched
from .report import cpu_label, fmt, fmt_runs, med, size_label
from .stack import Stack


def section_crowd(stack: Stack, args: argparse.Namespace) -> list[str]:
    n, size, budget = args.crowd, args.crowd_size, args.budget
    walls, peaks, bases, oks, aggs = [], [], [], [], []
    cpus: list[dict[str, float]] = []
    for r in range(args.repeat):
        stack.restart_gateway()
        wait_idle(args.wait_idle, f"section 3 repeat {r + 1}")
        pid = stack.gw.worker
        results: list[Any] = [None] * n

        def one(i: int, r: int = r, results: list[Any] = results) -> None:
            url = f"{stack.gw_url}/files/{BUCKET}/crowd/{r}-{i}"
            try:
                t = curl_generated(size, url, 1800, stack.work / f"crowd-{i}.json", stack.gw.curl_headers())
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
            tb = stack.gw.first_traceback()
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
    return [
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
