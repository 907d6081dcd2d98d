"""Section 2: peak RSS of the gateway worker during one upload of each size (generator | curl -T -)."""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import BUCKET, BenchError, RssPoller, log, wait_idle

from .measure import Profiler, Transfer, check_upload, curl_generated, run_watched
from .report import fmt, fmt_runs, med, size_label
from .stack import Stack


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
            stack.restart_gateway()
            wait_idle(args.wait_idle, f"section 2 {size_label(size)} run {r + 1}")
            key = f"rss/{size}-{r}"
            pid = stack.gw.worker
            got: list[Any] = [None]

            def upload(got: list[Any] = got, size: int = size, key: str = key) -> None:
                url = f"{stack.gw_url}/files/{BUCKET}/{key}"
                try:
                    got[0] = curl_generated(size, url, max(120, size / 10e6), resp, stack.gw.curl_headers())
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
