"""How long the web page takes to take in a 10,000-file folder drop, and whether it freezes meanwhile.

A script, not a test. It starts a SeaweedFS (s3gate.embedded), the gateway
(create_app + production's runner, auth off, 127.0.0.1, a free port) and
Debian's Chromium through Playwright, all in one temporary directory, then
drops a folder of N small files (10 folders of N/10) on the page through
DevTools' Input.dispatchDragEvent, as a user's drag would, and measures:

- queued and shown: from the drop until the upload box shows all N files queued;
- the longest frame meanwhile (the page's own requestAnimationFrame gaps): a
  frozen page shows as one long frame;
- uploads then run for --upload-seconds and are cancelled (the figure is about
  the queue, not the store).

    .venv/bin/python bench/page_drop.py            # 10,000 files
    .venv/bin/python bench/page_drop.py --files 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.common

from bench.common import free_port, start_store
from s3gate import settings as settings_mod
from s3gate.app import create_app, make_runner
from s3gate.embedded import SeaweedFS

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


# -- chromium() is shared with bench/page_upload.py -----------------------------------------
@asynccontextmanager
async def chromium(tmp: Path) -> AsyncIterator:
    """Debian's Chromium, headless, through Playwright; its temp files under tmp."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS, env={**os.environ, "TMPDIR": str(tmp)}
        )
        try:
            yield browser
        finally:
            await browser.close()


def store_settings(seaweed: SeaweedFS, data_dir: Path, **overrides) -> settings_mod.Settings:
    """The gateway's settings for a bench: production defaults, auth off, this store."""
    return settings_mod.load(
        environ={},
        use_file=False,
        auth=False,
        s3_endpoint=seaweed.endpoint,
        s3_access_key=seaweed.credentials.access_key,
        s3_secret_key=seaweed.credentials.secret_key,
        data_dir=str(data_dir),
        **overrides,
    )


def make_tree(root: Path, files: int) -> Path:
    top = root / "drop"
    per = max(1, files // 10)
    for i in range(files):
        d = top / f"d{i // per:02}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05}.txt").write_bytes(b"x" * 64)
    return top


async def measure(base: str, bucket: str, tree: Path, files: int, upload_seconds: float, tmp: Path) -> dict:
    async with chromium(tmp) as browser:
        page = await browser.new_page()
        await page.goto(f"{base}/#/{bucket}/")
        await page.wait_for_selector("#dropzone", state="visible")
        await page.evaluate(
            """() => { window.__gap = 0; let last = performance.now();
                 const tick = (now) => { window.__gap = Math.max(window.__gap, now - last); last = now;
                                         requestAnimationFrame(tick); };
                 requestAnimationFrame(tick); }"""
        )
        cdp = await page.context.new_cdp_session(page)
        box = await page.locator("#dropzone").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        data = {"items": [], "files": [str(tree)], "dragOperationsMask": 1}
        start = time.perf_counter()
        for kind in ("dragEnter", "dragOver", "drop"):
            await cdp.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})
        await page.wait_for_selector(f'#uploads[data-total="{files}"]', state="attached", timeout=600_000)
        queued = time.perf_counter() - start
        gap_queue = await page.evaluate("() => window.__gap")
        await asyncio.sleep(upload_seconds)  # a bench, not a test: let uploads run a while
        done = int(await page.get_attribute("#uploads", "data-done") or 0)
        gap_all = await page.evaluate("() => window.__gap")
        await page.click("#cancel-all")
    return {
        "queued_s": queued,
        "longest_frame_ms_queueing": gap_queue,
        "longest_frame_ms_with_uploads": gap_all,
        "uploaded_in_window": done,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--upload-seconds", type=float, default=10.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="s3g-bench-"))
    seaweed = None
    runner = None
    try:
        bucket = "page-drop"
        seaweed = await asyncio.to_thread(start_store, root / "seaweedfs", (bucket,))
        settings = store_settings(seaweed, root / "gateway")
        runner = make_runner(create_app(settings), settings)
        await runner.setup()
        port = free_port()
        from aiohttp import web

        await web.TCPSite(runner, "127.0.0.1", port).start()
        tree = await asyncio.to_thread(make_tree, root / "tree", args.files)
        tmp = root / "chromium"
        tmp.mkdir()
        result = await measure(f"http://127.0.0.1:{port}", bucket, tree, args.files, args.upload_seconds, tmp)
        print(
            f"| files dropped | queued and shown | longest frame while queueing | longest frame with 3 uploads running | uploaded in {args.upload_seconds:.0f} s |"
        )
        print("|---|---|---|---|---|")
        print(
            f"| {args.files:,} | {result['queued_s']:.2f} s | {result['longest_frame_ms_queueing']:.0f} ms "
            f"| {result['longest_frame_ms_with_uploads']:.0f} ms | {result['uploaded_in_window']} |"
        )
    finally:
        if runner is not None:
            await runner.cleanup()
        if seaweed is not None:
            await asyncio.to_thread(seaweed.stop, 5)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
