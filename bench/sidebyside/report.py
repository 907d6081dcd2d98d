"""Medians, number formats and the Markdown around the section tables."""

from __future__ import annotations

import statistics
from typing import Any

from bench.common import GiB, KiB, MiB


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt(x: float, nd: int = 0) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{x:,.{nd}f}"


def fmt_runs(xs: list[float], nd: int = 0) -> str:
    return ", ".join(fmt(x, nd) for x in xs) if xs else "n/a"


def size_label(n: int) -> str:
    if n % GiB == 0:
        return f"{n // GiB} GiB"
    if n % MiB == 0:
        return f"{n // MiB} MiB"
    return f"{n // KiB} KiB"


def cpu_label(samples: list[dict[str, float]]) -> str:
    """Median cores used by client / proxy / store / everything else over the transfer."""
    if not samples:
        return "n/a"
    parts = []
    for k in ("client", "proxy", "store", "softirq", "other"):
        vals = [s[k] / s["wall"] for s in samples if s["wall"] > 0]
        parts.append(f"{med(vals):.2f}")
    return " / ".join(parts)


def rotate(items: list[Any], r: int) -> list[Any]:
    """The order of the targets changes every repeat, so none always goes first."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


def auth_label(auth: str) -> str:
    return "auth on (`Authorization: Bearer` API token)" if auth == "token" else "`S3GATE_AUTH=0`"


def header(
    cmd: str,
    started: str,
    args: Any,
    machine: str,
    code_seen: list[str],
    settings: dict[str, str],
    load0: str,
    worker_class: str = "",
) -> list[str]:
    auth = (
        "auth on (every request carries `Authorization: Bearer` with an API token)"
        if args.auth == "token"
        else "auth off"
    )
    return [
        "## Benchmark: s3gate vs. nginx vs. SeaweedFS direct",
        "",
        f"Command: `{cmd}` ({started}; repeats per figure: {args.repeat}; medians shown).",
        "",
        f"Machine: {machine}. Everything on 127.0.0.1: client, proxy and store share the cores.",
        "",
        (
            f"s3gate source fingerprint: {', '.join(code_seen)}"
            + (" (CHANGED during the run: figures mix versions)" if len(code_seen) > 1 else "")
            + " (sha256 of s3gate/**/*.py). "
            f"s3gate: gunicorn, `{worker_class}`, {args.gw_workers} worker(s), {auth}, "
            + ", ".join(f"`{k}={v}`" for k, v in sorted(settings.items()))
            if code_seen
            else "s3gate: not run"
        )
        + f". nginx {args.nginx_workers} worker(s), upstream keepalive {args.nginx_keepalive or 'off'}. "
        "'cores used' = CPU seconds / wall seconds of each party during the transfer "
        "(client = curl + body generator, or the Python client; softirq = kernel network processing not "
        "charged to any process, mostly loopback TCP; other = every other process on the machine, "
        "which should be near 0). "
        f"Load average at start: {load0}.",
        "",
    ]


def footer(orphans: int, errors: list[str]) -> list[str]:
    return [
        f"Multipart uploads left open in the bucket at the end: {orphans}. "
        f"ERROR entries in the gateway's log: {len(errors)}"
        + (f" (first: `{errors[0][:200]}`)" if errors else "")
        + ".",
        "",
    ]
