"""A large file uploaded through the web page in headless Chromium, against `curl -T` of the same file, in one run.

    .venv/bin/python bench/page_upload.py                       # 1 GiB, 3 rounds
    .venv/bin/python bench/page_upload.py --size 256MiB --repeat 1

A script, not a test. It starts a SeaweedFS (s3gate.embedded) and the gateway
as production runs it (gunicorn with the launcher's own argv, one
``aiohttp.GunicornWebWorker``, default settings, auth off) on loopback ports
in a temporary directory, writes a file of random bytes, and in each round
uploads it twice to the same gateway:

- ``curl -T FILE http://HOST/files/bench/curl-N.bin`` (one streaming PUT);
- through the page: Debian's Chromium (Playwright, bench/page_drop.py's
  helpers) opens the folder view and the file is picked with the file
  picker. Above 64 MiB the page sends it through an upload session (parts of
  the gateway's choosing, three in flight, each a ``Blob.slice``); timed from
  the pick until the upload box shows it done, so creating and completing
  the session count too.

MB/s is file bytes / wall seconds (MB = 10^6 bytes). Meanwhile the RSS of
the gunicorn workers (/proc, every 20 ms) gives the gateway's peak; CPU
seconds per wall second of the client (curl, or every Chromium process and
Playwright's driver), the gateway (gunicorn), the store (weed) and the rest
of the machine show who used the cores. Every stored object's size is
checked with a HEAD straight to SeaweedFS. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.*

from bench.common import (
    BUCKET,
    PROCS,
    BenchError,
    Gateway,
    MiB,
    cpu_seconds,
    machine_busy,
    parse_size,
    proc_tree,
    random_file,
    start_store,
    status_kb,
)
from bench.page_drop import chromium
from s3gate.embedded import SeaweedFS


def cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each process so far, its waited-for children's included."""
    return {pid: cpu_seconds([pid], reaped=True) for pid in pids}


class Meter:
    """Peak RSS of the gunicorn workers (polled) and CPU seconds per wall second of each party, over one transfer."""

    def __init__(self, gateway: Gateway, store: SeaweedFS, browser_is_client: bool = False):
        self.gateway, self.store = gateway, store
        # The client: curl (a child waited for meanwhile), or the browser (Chromium and Playwright's driver).
        self.browser_is_client = browser_is_client
        self.peak = 0
        self._stop = threading.Event()

    def workers_rss(self) -> int:
        total = 0
        for pid in self.gateway.worker_pids():
            try:
                total += status_kb(pid, "VmRSS") * 1024
            except (OSError, BenchError):
                pass
        return total

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.workers_rss())

    def parties(self) -> dict[str, list[int]]:
        gw = self.gateway.pids()
        store = proc_tree(self.store.process.pid) if self.store.process else []
        mine = set(gw + store)
        client = [pid for pid in proc_tree(os.getpid())[1:] if pid not in mine]
        return {"gateway": gw, "store": store, "client": client if self.browser_is_client else []}

    def __enter__(self) -> Meter:
        self.peak = self.workers_rss()
        self._before = {name: cpu(procs) for name, procs in self.parties().items()}
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._busy = sum(machine_busy())
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        after = {name: cpu(procs) for name, procs in self.parties().items()}
        used = {
            name: sum(v - self._before[name].get(pid, 0.0) for pid, v in after[name].items())
            for name in ("gateway", "store", "client")
        }
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # curl, waited for meanwhile
        used["client"] += (ru.ru_utime - self._children.ru_utime) + (ru.ru_stime - self._children.ru_stime)
        used["other"] = max(0.0, sum(machine_busy()) - self._busy - sum(used.values()))
        self.cores = {name: v / self.seconds for name, v in used.items()}


def stored_size(seaweed: SeaweedFS, key: str) -> int:
    return seaweed.client().head_object(Bucket=BUCKET, Key=key)["ContentLength"]


def curl_upload(path: Path, url: str) -> None:
    subprocess.run(
        ["curl", "-sS", "--fail", "-T", str(path), "-o", "/dev/null", url], check=True, timeout=3600
    )  # fmt: skip


async def page_upload(browser, base: str, path: Path) -> dict:
    """Pick the file in the folder view; wait until the upload box shows it done. The session's part size."""
    page = await browser.new_page()
    sessions: list[dict] = []

    async def created(response) -> None:
        if response.request.method == "POST" and response.url.endswith("/api/uploads"):
            sessions.append(await response.json())

    page.on("response", created)
    try:
        await page.goto(f"{base}/#/{BUCKET}/")
        await page.wait_for_selector("#dropzone", state="visible")
        await page.set_input_files("#pick-files", str(path))
        await page.wait_for_selector("#uploads[data-state=idle]", state="attached", timeout=3_600_000)
        state = await page.evaluate("() => ({...document.getElementById('uploads').dataset})")
        if state.get("done") != "1":
            raise RuntimeError(f"the page did not upload {path.name}: {state}")
        return sessions[0] if sessions else {}
    finally:
        await page.close()


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=parse_size, default=1024 * MiB, help="file size (default 1GiB)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="s3g-bench-page-"))
    seaweed = None
    try:
        seaweed = await asyncio.to_thread(start_store, work / "seaweedfs")
        gateway = await asyncio.to_thread(Gateway(work, seaweed).start)
        base = gateway.base
        src = work / "file.bin"
        await asyncio.to_thread(random_file, src, args.size)
        (work / "chromium").mkdir()
        rows: dict[str, list[tuple[float, int, dict[str, float]]]] = {"curl -T": [], "web page": []}
        baseline = 0
        part_size = 0
        async with chromium(work / "chromium") as browser:
            # Warm-up: imports, the first S3 client, Chromium's first page.
            small = work / "warm.bin"
            small.write_bytes(os.urandom(MiB))
            await asyncio.to_thread(curl_upload, small, f"{base}/files/{BUCKET}/warm-curl.bin")
            await page_upload(browser, base, small)
            baseline = Meter(gateway, seaweed).workers_rss()
            for n in range(1, args.repeat + 1):
                for how in rows:
                    key = f"{'curl' if how == 'curl -T' else 'page'}-{n}.bin"
                    path = work / key
                    os.link(src, path)  # the page names the key after the file
                    with Meter(gateway, seaweed, browser_is_client=how == "web page") as m:
                        if how == "curl -T":
                            await asyncio.to_thread(curl_upload, path, f"{base}/files/{BUCKET}/{key}")
                        else:
                            part_size = (await page_upload(browser, base, path)).get("part_size", 0)
                    size = await asyncio.to_thread(stored_size, seaweed, key)
                    if size != args.size:
                        raise RuntimeError(f"{key}: stored {size} bytes, sent {args.size}")
                    rows[how].append((args.size / m.seconds / 1e6, m.peak, m.cores))
                    print(f"round {n}: {how}: {args.size / m.seconds / 1e6:.0f} MB/s", file=sys.stderr)
        gib = args.size / (1024 * MiB)
        print(
            f"\n{gib:g} GiB of random bytes to the same gateway (gunicorn, 1 worker, default settings, auth off), "
            f"{args.repeat} round(s), curl first in each; page: resumable session, parts of "
            f"{part_size / MiB:g} MiB, 3 in flight. Load average at the end: "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
            + "\n"
        )
        print(
            "| client | MB/s (median) | runs | gateway peak RSS MB | baseline MB "
            "| cores: client / gateway / store / other |"
        )
        print("|---|---:|---|---:|---:|---|")
        for how, rs in rows.items():
            speeds = [r[0] for r in rs]
            cores = {k: statistics.median(r[2][k] for r in rs) for k in ("client", "gateway", "store", "other")}
            print(
                f"| {how} | {statistics.median(speeds):.0f} | {', '.join(f'{s:.0f}' for s in speeds)} "
                f"| {max(r[1] for r in rs) / 1e6:.0f} | {baseline / 1e6:.0f} "
                f"| {' / '.join(f'{v:.2f}' for v in cores.values())} |"
            )
        return 0
    finally:
        await asyncio.to_thread(PROCS.stop_all)
        if seaweed is not None:
            await asyncio.to_thread(seaweed.stop, 5)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
