#!/usr/bin/env python3
"""s3gate benchmark: s3gate vs. a plain nginx reverse proxy vs. SeaweedFS direct.

    .venv/bin/python bench/run.py            # full run (1 GiB, 5 GiB, 32 x 256 MiB), 3 repeats
    .venv/bin/python bench/run.py --quick    # small sizes, to iterate fast
    .venv/bin/python bench/run.py --repeat 5 --only 1,4

Everything runs on 127.0.0.1 on free ports, in one temporary directory that is
removed at exit (also on Ctrl-C, SIGTERM or the global time limit):

* SeaweedFS (``weed mini``, s3gate's embedded ``SeaweedFS`` class), bucket ``bench``;
* s3gate exactly as ``s3gate serve`` runs it (``s3gate.launcher.gunicorn_argv``:
  gunicorn with ``aiohttp.GunicornWebWorker``), one worker (``--gw-workers``),
  ``S3GATE_AUTH=0`` or, with ``--auth token``, authentication on and every
  request carrying an API token, talking to that SeaweedFS;
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

This file parses the command line and runs the sections; each section is a
module of bench/sidebyside/, the shared process helpers are bench/common.py.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.*

from bench.common import BIN, PROCS, BenchError, GiB, KiB, MiB, log, parse_size, versions
from bench.sidebyside import crowd, gen, report, rss, small, transfers
from bench.sidebyside.stack import Stack, gateway_importable

HERE = Path(__file__).resolve().parent


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
    ap.add_argument(
        "--auth",
        choices=("off", "token"),
        default="off",
        help="off: S3GATE_AUTH=0 (default); token: auth on, every gateway request carries an API token",
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


def main(argv: list[str]) -> int:
    if argv[:1] == ["_gen"]:
        return gen.main(argv[1:])
    args = parse_args(argv)
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
    stack = Stack(work, args)
    rc = 1
    try:
        gw = not args.no_gateway
        if gw:
            ok, why = gateway_importable()
            if not ok:
                log(f"WARNING: s3gate.app does not import ({why}); measuring direct and nginx only")
                gw = False
        stack.start_store()
        stack.start_nginx()
        if gw:
            stack.start_gateway()
            stack.warm_gateway()
        started = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        rows: list[str] = []
        if 1 in args.sections:
            rows += transfers.section_big(stack, args, gw)
            stack.vacuum()
        if 2 in args.sections and gw:
            rows += rss.section_rss(stack, args)
        if 3 in args.sections and gw:
            rows += crowd.section_crowd(stack, args)
        if 4 in args.sections:
            if gw and (2 in args.sections or 3 in args.sections):
                stack.restart_gateway()
            rows += small.section_small(stack, args, gw)
        orphans = stack.open_multipart_uploads()
        settings = stack.gw.shown_settings() if stack.gw else {}
        worker_class = stack.gw.worker_class if stack.gw else ""
        header = report.header(cmd, started, args, versions(), stack.code_seen, settings, load0, worker_class)
        footer = report.footer(orphans, stack.gw.errors() if stack.gw else [])
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
        for p in (work / "gunicorn.log", work / "weed" / "seaweedfs.log", work / "nginx" / "error.log"):
            if p.exists():
                tail = p.read_text(errors="replace").splitlines()[-15:]
                if tail:
                    log(f"--- tail of {p.relative_to(work)}:\n" + "\n".join(tail))
        rc = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish cleaning up even on a second Ctrl-C
        t_clean = time.monotonic()
        PROCS.stop_all()
        stack.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"cleaned up in {time.monotonic() - t_clean:.1f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
