"""curl transfers and what each party used meanwhile: CPU per party, py-spy profiles, stall watching."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import PROCS, BenchError, cpu_seconds, machine_busy, own_cpu

from .stack import Stack

GEN = Path(__file__).resolve().with_name("gen.py")
CURL_FMT = (
    "%{http_code} %{size_upload} %{size_download} %{speed_upload} %{speed_download} %{time_total} %{num_redirects}"
)


def run(argv: list[str], timeout: float, name: str = "cmd", **kw: Any) -> subprocess.CompletedProcess:
    """subprocess.run with a time limit and registration for cleanup."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = PROCS.popen(name, argv, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        PROCS.stop(p, timeout=2, sig=signal.SIGKILL)
        raise BenchError(f"{name} timed out after {timeout:.0f}s: {shlex.join(argv)}") from None
    PROCS.forget(p)
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


@dataclass
class Transfer:
    code: int
    up_bytes: int
    down_bytes: int
    speed_up: float
    speed_down: float
    seconds: float
    redirects: int
    body: bytes = b""
    cpu: dict[str, float] = field(default_factory=dict)


def parse_curl(out: bytes) -> Transfer:
    parts = out.decode().split()
    if len(parts) != 7:
        raise BenchError(f"unexpected curl -w output: {out!r}")
    code, up, down, su, sd, tt, nr = parts
    return Transfer(int(code), int(up), int(down), float(su), float(sd), float(tt), int(nr))


def curl(args: list[str], timeout: float, resp_file: Path | None = None, stdin: Any = None) -> Transfer:
    out = str(resp_file) if resp_file else "/dev/null"
    argv = ["curl", "-sS", "--max-time", str(int(timeout)), "-o", out, "-w", CURL_FMT, *args]
    r = run(argv, timeout + 30, name="curl", stdin=stdin)
    if r.returncode != 0:
        shown = ["Authorization: …" if a.startswith("Authorization:") else a for a in argv]  # no token in logs
        raise BenchError(f"curl failed ({r.returncode}): {r.stderr.decode()[-500:]} :: {shlex.join(shown)}")
    t = parse_curl(r.stdout)
    if resp_file is not None and resp_file.exists():
        t.body = resp_file.read_bytes()[:100_000]
    return t


def curl_generated(size: int, url: str, timeout: float, resp_file: Path, extra: list[str] | None = None) -> Transfer:
    """generator | curl -T - with an explicit Content-Length (no chunking)."""
    gen = PROCS.popen("gen", [sys.executable, str(GEN), str(size)], stdout=subprocess.PIPE)
    try:
        args = ["-T", "-", "-H", f"Content-Length: {size}", "-H", "Transfer-Encoding:", *(extra or []), url]
        return curl(args, timeout, resp_file, stdin=gen.stdout)
    finally:
        gen.stdout.close()
        try:
            gen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(gen, timeout=2)


def check_upload(t: Transfer, size: int, what: str, sha256: str | None = None, gateway: bool = False) -> None:
    if t.code not in (200, 201):
        raise BenchError(f"{what}: HTTP {t.code}: {t.body[:300]!r}")
    if t.up_bytes != size:
        raise BenchError(f"{what}: curl sent {t.up_bytes} bytes, expected {size}")
    if gateway:
        try:
            info = json.loads(t.body)
        except ValueError:
            raise BenchError(f"{what}: response is not JSON: {t.body[:300]!r}") from None
        if isinstance(info, dict) and "files" in info and isinstance(info["files"], list) and info["files"]:
            info = info["files"][0]
        if int(info.get("size", -1)) != size:
            raise BenchError(f"{what}: gateway says size {info.get('size')}, expected {size}")
        if sha256 and info.get("sha256") and info["sha256"] != sha256:
            raise BenchError(f"{what}: gateway sha256 {info['sha256']} != {sha256}")


def check_download(t: Transfer, size: int, what: str, redirects: int = 0) -> None:
    if t.code != 200 or t.down_bytes != size:
        raise BenchError(f"{what}: HTTP {t.code}, {t.down_bytes} bytes (expected 200, {size})")
    if t.redirects != redirects:
        raise BenchError(f"{what}: {t.redirects} redirects, expected {redirects}")


class CpuMeter:
    """CPU seconds used by client / proxy / store between enter and exit."""

    def __init__(self, stack: Stack, proxy: str):
        self.stack, self.proxy = stack, proxy

    def _proxy_pids(self) -> list[int]:
        if self.proxy == "nginx":
            return self.stack.nginx_pids()
        if self.proxy == "s3gate":
            return self.stack.gw_workers()
        return []

    def __enter__(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.c0 = own_cpu()
        self.p0 = cpu_seconds(self._proxy_pids())
        self.s0 = cpu_seconds(self.stack.store_pids())
        self.b0, self.irq0 = machine_busy()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.monotonic() - self.t0
        self.result = {
            "wall": self.wall,
            "client": own_cpu() - self.c0,
            "proxy": cpu_seconds(self._proxy_pids()) - self.p0,
            "store": cpu_seconds(self.stack.store_pids()) - self.s0,
        }
        ours = self.result["client"] + self.result["proxy"] + self.result["store"]
        tasks, irq = machine_busy()
        self.result["softirq"] = irq - self.irq0
        self.result["other"] = max(0.0, tasks - self.b0 - ours)


class Profiler:
    """py-spy record of the gateway worker while a measurement runs (--profile DIR).

    Writes collapsed stacks (DIR/NAME.txt) and a summary of the hottest frames
    (DIR/NAME.top.txt). A no-op without --profile.
    """

    def __init__(self, stack: Stack, args: argparse.Namespace, name: str, active: bool = True):
        self.stack, self.args, self.name = stack, args, name
        self.active = bool(args.profile) and active
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        if not self.active:
            return self
        out = Path(self.args.profile) / f"{self.name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = [self.args.py_spy, "record", "--pid", str(self.stack.gw_workers()[0]), "--rate", "250",
                "--format", "raw", "--output", str(out), "--nonblocking"]  # fmt: skip
        self.out = out
        self.proc = PROCS.popen("py-spy", argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attach
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(self.proc, timeout=2)
        with contextlib.suppress(OSError):
            summarize_profile(self.out)


def summarize_profile(path: Path, top: int = 25) -> None:
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_t[frames[-1]] = self_t.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    if not total:
        return
    lines = [f"{path.name}: {total} samples", "", "self %  frame"]
    lines += [f"{100 * c / total:6.1f}  {f}" for f, c in sorted(self_t.items(), key=lambda x: -x[1])[:top]]
    lines += ["", "incl %  frame"]
    lines += [f"{100 * c / total:6.1f}  {f}" for f, c in sorted(incl.items(), key=lambda x: -x[1])[: top * 2]]
    path.with_suffix(".top.txt").write_text("\n".join(lines) + "\n")


def run_watched(stack: Stack, args: argparse.Namespace, fns: list[Callable[[], None]], what: str) -> None:
    """Run fns in threads; fail (not hang) if the gateway worker stops reading for --stall-timeout s.

    Progress = the worker's rchar in /proc/PID/io (bytes it read from sockets).
    On a stall the curls are killed and the open multipart uploads are described.
    """
    pid = stack.gw.worker
    threads = [threading.Thread(target=fn, daemon=True) for fn in fns]
    for th in threads:
        th.start()
    last, since = proc_rchar(pid), time.monotonic()
    while any(th.is_alive() for th in threads):
        time.sleep(0.5)
        now, cur = time.monotonic(), proc_rchar(pid)
        if cur != last:
            last, since = cur, now
        elif now - since > args.stall_timeout:
            alive = sum(th.is_alive() for th in threads)
            diag = stack.describe_open_uploads()
            if args.stall_signal:  # e.g. a diagnostics hook in the worker that dumps its asyncio tasks
                with contextlib.suppress(OSError):
                    os.kill(pid, getattr(signal, "SIG" + args.stall_signal.upper().removeprefix("SIG")))
                time.sleep(2)
            with PROCS.lock:
                clients = [p for name, p in PROCS.live if name in ("curl", "gen")]
            for p in clients:
                PROCS.stop(p, timeout=2, sig=signal.SIGKILL)
            for th in threads:
                th.join(10)
            raise BenchError(
                f"{what}: the gateway worker read nothing for {args.stall_timeout:.0f}s with {alive} "
                f"upload(s) unfinished (stalled, not slow); in S3: {diag}"
            )


def proc_rchar(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return -1
