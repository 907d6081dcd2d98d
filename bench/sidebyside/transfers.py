"""Section 1: a 1 GiB upload and download with curl, direct vs. nginx vs. s3gate (proxy and redirect)."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable

from bench.common import BUCKET, BenchError, log, random_file, wait_idle

from .measure import CpuMeter, Profiler, Transfer, check_download, check_upload, curl
from .report import cpu_label, fmt, fmt_runs, med, rotate, size_label
from .stack import Stack


def section_big(stack: Stack, args: argparse.Namespace, gw: bool) -> list[str]:
    size = args.big
    label = size_label(size)
    log(f"section 1: creating a {label} pseudo-random file")
    path = stack.work / "big.bin"
    h = hashlib.sha256()
    random_file(path, size, seed=1, digest=h)
    sha = h.hexdigest()
    timeout = max(120, size / (10 * 1e6))  # never slower than 10 MB/s
    resp = stack.work / "resp.json"
    sigv4 = stack.sigv4
    auth = stack.gw.curl_headers() if gw else []

    # The object every download reads: uploaded once, directly, outside the clock.
    dl_key = "big/download-source"
    t = curl([*sigv4, "-T", str(path), f"{stack.s3_url}/{BUCKET}/{dl_key}"], timeout, resp)
    check_upload(t, size, "seed upload")

    ups: dict[str, list[float]] = {k: [] for k in ("direct", "nginx", "s3gate")}
    downs: dict[str, list[float]] = {k: [] for k in ("direct", "nginx", "s3gate proxy", "s3gate redirect")}
    cpu: dict[str, list[dict[str, float]]] = {}

    def up(base: str, *extra: str) -> Callable[[str], Transfer]:
        return lambda key: curl([*extra, "-T", str(path), f"{base}/{key}"], timeout, resp)

    def dn(url: str, *extra: str) -> Callable[[], Transfer]:
        return lambda: curl([*extra, url], timeout)

    uploads = [
        ("direct", "", up(f"{stack.s3_url}/{BUCKET}", *sigv4), False),
        ("nginx", "nginx", up(f"{stack.ng_url}/{BUCKET}", *sigv4), False),
    ]
    downloads = [
        ("direct", "", dn(f"{stack.s3_url}/{BUCKET}/{dl_key}", *sigv4), 0),
        ("nginx", "nginx", dn(f"{stack.ng_url}/{BUCKET}/{dl_key}", *sigv4), 0),
    ]
    if gw:
        gw_files = f"{stack.gw_url}/files/{BUCKET}"
        uploads.append(("s3gate", "s3gate", up(gw_files, *auth), True))
        # -L: curl sends a -H Authorization only to the host (and port) it was given, not to the presigned URL.
        downloads += [
            ("s3gate proxy", "s3gate", dn(f"{gw_files}/{dl_key}?mode=proxy", *auth), 0),
            ("s3gate redirect", "s3gate", dn(f"{gw_files}/{dl_key}?mode=redirect", "-L", *auth), 1),
        ]

    # warm-up: one download per path (page cache, connection setup, lazy imports)
    for name, _, fn, redirects in downloads:
        check_download(fn(), size, f"warm-up download {name}", redirects)

    for r in range(args.repeat):
        wait_idle(args.wait_idle, f"section 1 repeat {r + 1}")
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
        f"Uploads: `curl -T {label.replace(' ', '')}-file` (direct and nginx signed with `--aws-sigv4`"
        + ("; s3gate with `-H 'Authorization: Bearer …'`" if auth else "")
        + "); downloads read one object (uploaded directly) to /dev/null. "
        f"nginx spooled a request body to disk: {stack.nginx_buffered_warnings()} time(s).",
        "",
    ]
    return rows
