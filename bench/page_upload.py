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
the gunicorn workers (psutil, every 20 ms) gives the gateway's peak; CPU
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

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from page_drop import chromium, start_store, store_settings
from run import parse_size, wait_port

from s3gate.embedded import SeaweedFS, free_port
from s3gate.launcher import gunicorn_argv

MiB = 1024 * 1024
BUCKET = "bench"


def random_file(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 8 * MiB)
            fh.write(os.urandom(n))
            left -= n


def start_gateway(seaweed: SeaweedFS, work: Path) -> tuple[subprocess.Popen, int]:
    """One gunicorn worker, exactly the launcher's argv; settings from the environment as in production."""
    port = free_port()
    settings = store_settings(seaweed, work / "gw-data", host="127.0.0.1", port=port, workers=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3GATE_", "AWS_"))}
    cfg = work / "s3gate.toml"
    cfg.write_text("")
    env |= {
        "S3GATE_CONFIG": str(cfg),
        "S3GATE_S3_ENDPOINT": seaweed.endpoint,
        "S3GATE_S3_ACCESS_KEY": seaweed.credentials.access_key,
        "S3GATE_S3_SECRET_KEY": seaweed.credentials.secret_key,
        "S3GATE_AUTH": "0",
        "S3GATE_DATA_DIR": settings.data_dir,
    }
    with open(work / "gw.log", "wb") as log:  # the gateway holds its own copy of the descriptor
        proc = subprocess.Popen(gunicorn_argv(settings), env=env, stdout=subprocess.DEVNULL, stderr=log)
    wait_port(port, 60, proc, "the gateway")
    return proc, port


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return out


def machine_busy() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


class Meter:
    """Peak RSS of the gunicorn workers (polled) and CPU seconds per wall second of each party, over one transfer."""

    def __init__(self, gateway: subprocess.Popen, store: SeaweedFS, browser_is_client: bool = False):
        self.gateway, self.store = gateway, store
        # The client: curl (a child waited for meanwhile), or the browser (Chromium and Playwright's driver).
        self.browser_is_client = browser_is_client
        self.peak = 0
        self._stop = threading.Event()

    def workers_rss(self) -> int:
        total = 0
        for w in psutil.Process(self.gateway.pid).children():
            try:
                total += w.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.workers_rss())

    def parties(self) -> dict[str, list[psutil.Process]]:
        gw, store = tree(self.gateway.pid), tree(self.store.process.pid) if self.store.process else []
        mine = {p.pid for p in gw + store}
        client = [p for p in psutil.Process().children(recursive=True) if p.pid not in mine]
        return {"gateway": gw, "store": store, "client": client if self.browser_is_client else []}

    def __enter__(self) -> Meter:
        self.peak = self.workers_rss()
        self._before = {name: cpu(procs) for name, procs in self.parties().items()}
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._busy = machine_busy()
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
        used["other"] = max(0.0, machine_busy() - self._busy - sum(used.values()))
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
    seaweed = gateway = None
    try:
        seaweed = await asyncio.to_thread(start_store, work / "seaweedfs", BUCKET)
        gateway, port = await asyncio.to_thread(start_gateway, seaweed, work)
        base = f"http://127.0.0.1:{port}"
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
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(30)
            except subprocess.TimeoutExpired:
                gateway.kill()
        if seaweed is not None:
            await asyncio.to_thread(seaweed.stop, 5)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
