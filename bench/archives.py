"""Whole folders: archives out and a tar stream in, against a plain download / `xargs -P4 curl -F` in the same run.

    .venv/bin/python bench/archives.py                        # 1,000 x 1 MiB, one 2 GiB object, 1,000 small files
    .venv/bin/python bench/archives.py --big-gib 0 --repeat 1  # skip the 2 GiB case
    nice -n 10 .venv/bin/python bench/archives.py --out bench/archives-run.md

Starts its own SeaweedFS (s3gate.embedded) and one gunicorn worker (the
launcher's own argv) on loopback ports in a temporary directory, uploads the
objects with `curl --parallel --aws-sigv4`, then:

- downloads, timed with curl to /dev/null: ``?archive=tar`` and
  ``?archive=zip`` of each folder (N x 1 MiB, one big object, M small
  objects) against a plain proxied GET of one object holding the same bytes,
  reading the worker's peak RSS (VmHWM, reset before each run);
- uploads: the M small files as one ``tar c | curl -T - ?extract=tar``
  against the same files sent with ``find | xargs -0 -P4 curl -F``.

Prints Markdown tables. Everything started is stopped at exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common

from bench.common import BUCKET, PROCS, Gateway, MiB, random_file, reset_peak, start_store, status_kb


def rss_mib(pid: int, field: str = "VmHWM") -> float:
    return status_kb(pid, field) / 1024


def timed_get(url: str, pid: int) -> tuple[float, int, float]:
    """(MB/s, bytes, peak RSS MiB) of one curl GET to /dev/null."""
    reset_peak(pid)
    out = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
        capture_output=True, text=True, check=True, timeout=3600,
    )  # fmt: skip
    size, seconds = out.stdout.split()
    return int(size) / float(seconds) / 1e6, int(size), rss_mib(pid)


def timed_shell(script: str, pid: int, cwd: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, stdout) of one shell pipeline."""
    reset_peak(pid)
    start = time.monotonic()
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True, check=True, timeout=3600
    )
    return time.monotonic() - start, rss_mib(pid), out.stdout


# -- the data -------------------------------------------------------------------------
def concatenation(path: Path, parts: list[Path]) -> Path:
    with open(path, "wb") as fh:
        for p in parts:
            fh.write(p.read_bytes())
    return path


def folders(args: argparse.Namespace, work: Path) -> tuple[dict[str, Path], dict[str, tuple[str, str]]]:
    """The objects to upload, and per case (folder, the single object with the same bytes)."""
    objects: dict[str, Path] = {}
    cases: dict[str, tuple[str, str]] = {}
    if args.count:
        many = [random_file(work / "many" / f"{i:05d}.bin", MiB) for i in range(args.count)]
        objects |= {f"many/{p.name}": p for p in many}
        objects["single/many.bin"] = concatenation(work / "many.bin", many)
        cases[f"{args.count:,} x 1 MiB"] = ("many/", "single/many.bin")
    if args.big_gib:
        objects["big/big.bin"] = random_file(work / "big.bin", int(args.big_gib * 1024 * MiB))
        cases[f"one {args.big_gib:g} GiB object"] = ("big/", "big/big.bin")
    if args.small:
        small = small_files(args, work)
        objects |= {f"small/{p.name}": p for p in small}
        objects["single/small.bin"] = concatenation(work / "small.bin", small)
        cases[f"{args.small:,} x {args.small_kib} KiB"] = ("small/", "single/small.bin")
    return objects, cases


def small_files(args: argparse.Namespace, work: Path) -> list[Path]:
    return [random_file(work / "smallsrc" / f"{i:05d}.bin", args.small_kib * 1024) for i in range(args.small)]


# -- the runs -----------------------------------------------------------------------------
def downloads(base: str, pid: int, cases: dict[str, tuple[str, str]], repeat: int) -> list[str]:
    rows = ["| folder | what | MB/s | × plain | bytes sent | worker peak RSS (MiB) |", "|---|---|---:|---:|---:|---:|"]
    for case, (folder, single) in cases.items():
        runs = {
            "plain download (one object, same bytes)": f"{base}/{single}",
            "?archive=tar": f"{base}/{folder}?archive=tar",
            "?archive=zip": f"{base}/{folder}?archive=zip",
        }
        results: dict[str, list[tuple[float, int, float]]] = {name: [] for name in runs}
        for _ in range(repeat):
            for name, url in runs.items():
                results[name].append(timed_get(url, pid))
        plain = statistics.median(r[0] for r in results["plain download (one object, same bytes)"])
        for name, rs in results.items():
            speed = statistics.median(r[0] for r in rs)
            peak = max(r[2] for r in rs)
            rows.append(f"| {case} | {name} | {speed:.0f} | {speed / plain:.2f} | {rs[0][1]:,} | {peak:.0f} |")
        print("\n".join(rows[-3:]), flush=True)
    return rows


def uploads(base: str, pid: int, args: argparse.Namespace, work: Path) -> list[str]:
    src = work / "smallsrc"
    total = args.small * args.small_kib * 1024
    rows = ["| what | files | seconds | files/s | MB/s | worker peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|"]
    ways = {
        "`tar c . \\| curl -T - ?extract=tar` (one request)": (
            lambda prefix: f"tar c . | curl -sS --fail -T - '{base}/{prefix}/?extract=tar'"
        ),
        "`find \\| xargs -0 -P4 curl -F` (one request a file)": (
            lambda prefix: (
                "find . -type f -print0 | xargs -0 -P4 -I{} "
                f"curl -sS --fail -o /dev/null -F 'file=@{{}};filename={{}}' '{base}/{prefix}/'"
            )
        ),
    }
    for n, (name, script) in enumerate(ways.items()):
        runs = []
        for r in range(args.repeat):
            seconds, peak, out = timed_shell(script(f"in{n}-{r}"), pid, src)
            if out.strip().startswith("{"):
                stored = json.loads(out)["stored_count"]
                assert stored == args.small, f"the tar upload stored {stored} of {args.small} files"
            runs.append((seconds, peak))
        seconds = statistics.median(s for s, _ in runs)
        peak = max(p for _, p in runs)
        rows.append(
            f"| {name} | {args.small:,} | {seconds:.1f} | {args.small / seconds:.0f} | {total / seconds / 1e6:.1f} | {peak:.0f} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="objects of 1 MiB in one folder (default 1000; 0: skip)")
    ap.add_argument(
        "--big-gib", type=float, default=2, help="size of the one-object folder in GiB (default 2; 0: skip)"
    )
    ap.add_argument(
        "--small", type=int, default=1000, help="small files, archived and uploaded (default 1000; 0: skip)"
    )
    ap.add_argument("--small-kib", type=int, default=16, help="size of each small file in KiB (default 16)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the median is shown")
    ap.add_argument("--out", type=Path, help="also write the tables to this file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="s3gate-bench-archives-"))
    seaweed = None
    try:
        seaweed = start_store(work / "weed")
        objects, cases = folders(args, work)
        seaweed.put_many(BUCKET, objects, work, timeout=3600)
        gateway = Gateway(work, seaweed).start()
        pid = gateway.worker
        base = f"{gateway.base}/files/{BUCKET}"
        if cases:
            timed_get(f"{base}/{next(iter(cases.values()))[0]}?archive=zip", pid)  # warm-up: imports, connections
        idle = rss_mib(pid, "VmRSS")
        header = [
            f"`{' '.join(['bench/archives.py', *sys.argv[1:]])}`: one worker, random bytes, median of {args.repeat}, "
            f"MB = 10^6 bytes; worker RSS after warm-up {idle:.0f} MiB",
            "",
        ]
        print("\n".join(header), flush=True)
        tables = header + downloads(base, pid, cases, args.repeat) + [""]
        if args.small:
            tables += uploads(base, pid, args, work)
        text = "\n".join(tables) + "\n"
        print("\n" + text)
        if args.out:
            args.out.write_text(text)
        return 0
    finally:
        PROCS.stop_all()
        if seaweed is not None:
            seaweed.stop(timeout=5)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
