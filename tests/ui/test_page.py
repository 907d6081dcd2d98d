"""The web page in real Chromium: sign in, browse, upload (picker, folder picker, a real folder drop), download, delete.

Every wait is on page state (the upload box's data-* counters, dialogs
opening, rows appearing), never a sleep. What landed is checked in
SeaweedFS itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import expect

from s3gate import keys
from s3gate.auth.rules import Rule
from tests.integration.helpers import eventually
from tests.ui.conftest import Site, keep_screenshot, module_site, sign_in

# One gateway and one Chromium for the module (seconds each on a busy machine);
# each test gets a fresh bucket (alice: all; bob: read, list, write in mixed/ok/)
# and signs in in a browser context of its own.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(seaweed, store, tmp_path_factory):
    async with module_site(seaweed, store, tmp_path_factory.mktemp("page-gateway") / "data") as site:
        yield site


@pytest_asyncio.fixture(loop_scope="module")
async def site(shared, store):
    bucket = await store.new_bucket()
    service = shared.gateway.app[keys.AUTH]
    await service.grant("alice", Rule.parse(f"{bucket}:all"))
    await service.grant("bob", Rule.parse(f"{bucket}:read,list"))
    await service.grant("bob", Rule.parse(f"{bucket}/mixed/ok:write"))
    yield Site(shared.gateway, bucket, store)
    await asyncio.to_thread(store.drop_bucket, bucket)


@pytest_asyncio.fixture(loop_scope="module")
async def browser(module_browser):
    return module_browser

XSS = "<img src=x onerror=alert(1)>.txt"


# -- helpers -------------------------------------------------------------------------------
# The page's CSP forbids eval, which Playwright's wait_for_function needs: waits
# are on selectors (the page mirrors its state in data-* attributes) and expect().
async def folder_ready(page, title: str) -> None:
    await expect(page.locator("#folder-title")).to_have_text(title)
    await page.wait_for_selector("body[data-listing=ready]", state="attached")


async def open_folder(page, site: Site, prefix: str = "") -> None:
    await page.goto(f"{site.base}/#/{site.bucket}/{prefix}")
    await folder_ready(page, f"{site.bucket}/{prefix}" if prefix else site.bucket)


async def uploads_settled(page, total: int) -> dict[str, str]:
    """Wait until the queue holds `total` items and none is queued, sending or waiting for a decision."""
    await page.wait_for_selector(f'#uploads[data-state=idle][data-total="{total}"]', state="attached", timeout=60_000)
    return await page.evaluate("() => ({...document.getElementById('uploads').dataset})")


def row(page, name: str):
    return page.locator("#rows .row", has_text=name)


def make_tree(root: Path) -> dict[str, bytes]:
    """drop/ with 3+ levels and 150 files in one directory (more than one readEntries batch)."""
    files: dict[str, bytes] = {}
    for rel in ["drop/top.txt", "drop/a/b/c/deep.txt", "drop/a/b/mid.bin"]:
        files[rel] = os.urandom(3000)
    for i in range(150):
        files[f"drop/many/f{i:03}.txt"] = f"file {i}\n".encode() * (i + 1)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


async def drag_and_drop(page, paths: list[Path]) -> None:
    """A real drop through DevTools: Chromium builds the DataTransfer, so folder entries are real."""
    cdp = await page.context.new_cdp_session(page)
    box = await page.locator("#dropzone").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    data = {"items": [], "files": [str(p) for p in paths], "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        await cdp.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})


# -- tests ---------------------------------------------------------------------------------
async def test_upload_browse_download_delete(browser, site: Site, tmp_path):
    page = await sign_in(browser, site)
    await page.wait_for_selector(f"#bucket-list >> text={site.bucket}")
    await page.click(f"#bucket-list >> text={site.bucket}")
    await folder_ready(page, site.bucket)
    await page.wait_for_selector("#dropzone", state="visible")

    # Several files through the picker.
    picked = {f"p{i}.txt": os.urandom(1000 + i) for i in range(3)}
    for name, data in picked.items():
        (tmp_path / name).write_bytes(data)
    await page.set_input_files("#pick-files", [str(tmp_path / n) for n in picked])
    state = await uploads_settled(page, 3)
    assert state["done"] == "3" and state["failed"] == "0"

    # A nested folder through a real drag and drop.
    files = make_tree(tmp_path / "tree")
    await drag_and_drop(page, [tmp_path / "tree" / "drop"])
    state = await uploads_settled(page, 3 + len(files))
    assert state["done"] == str(3 + len(files)) and state["failed"] == "0"
    bar = await page.evaluate("() => { const b = document.getElementById('overall-bar'); return [b.value, b.max]; }")
    assert bar[0] == bar[1] > 0  # 100%

    stored = set(await site.store.keys(site.bucket))
    assert stored == set(picked) | set(files)
    for key, data in {**picked, **files}.items():
        assert await site.store.get(site.bucket, key) == data, key

    # Browse into the folder: the listing refreshed after the uploads; folders first.
    await page.wait_for_selector("#rows .row.folder >> text=drop/")
    await page.click("#rows .row.folder >> text=drop/")
    await folder_ready(page, f"{site.bucket}/drop/")
    names = await page.locator("#rows .row .c-name").all_inner_texts()
    assert names[:3] == ["a/", "many/"] + names[2:3] and "top.txt" in names
    shot = tmp_path / "folder-view.png"
    await page.screenshot(path=str(shot))
    keep_screenshot(shot)

    # Download a file and compare bytes.
    async with page.expect_download() as info:
        await row(page, "top.txt").get_by_role("link", name="top.txt").click()
    download = await info.value
    assert Path(await download.path()).read_bytes() == files["drop/top.txt"]

    # Delete a file, after confirming.
    await row(page, "top.txt").get_by_role("button", name="Delete").click()
    await page.wait_for_selector("#confirm[open]")
    assert "top.txt" in await page.inner_text("#confirm-text")
    await page.click("#confirm-ok")
    await row(page, "top.txt").wait_for(state="detached")
    assert not await site.store.exists(site.bucket, "drop/top.txt")

    # Delete a folder: the dry run's count and size are shown first.
    await row(page, "many/").get_by_role("button", name="Delete").click()
    await page.wait_for_selector("#confirm[open]")
    question = await page.inner_text("#confirm-text")
    assert "150 files" in question and "drop/many/" in question
    assert await site.store.keys(site.bucket, "drop/many/")  # nothing gone before the answer
    await page.click("#confirm-ok")
    await row(page, "many/").wait_for(state="detached")
    assert await site.store.keys(site.bucket, "drop/many/") == []
    assert await site.store.exists(site.bucket, "drop/a/b/c/deep.txt")
    assert page.dialogs == []


async def test_refused_upload_is_listed_while_the_others_complete(browser, site: Site, tmp_path):
    page = await sign_in(browser, site, user="bob")  # may write only under mixed/ok/
    await open_folder(page, site)
    await page.wait_for_selector("#dropzone", state="visible")  # some writing is allowed below
    assert await page.locator("#rows .row button", has_text="Delete").count() == 0
    tree = tmp_path / "mixed"
    for rel in ("ok/a.txt", "ok/b.txt", "no/c.txt"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(rel.encode())
    await page.set_input_files("#pick-folder", str(tree))
    state = await uploads_settled(page, 3)
    assert state["done"] == "2" and state["failed"] == "1"
    failure = page.locator("#failure-list li")
    assert await failure.count() == 1
    text = await failure.inner_text()
    assert "mixed/no/c.txt" in text and "not permitted" in text
    assert await failure.get_by_role("button", name="Retry").count() == 1
    assert sorted(await site.store.keys(site.bucket)) == ["mixed/ok/a.txt", "mixed/ok/b.txt"]
    shot = tmp_path / "upload-errors.png"
    await page.screenshot(path=str(shot))
    keep_screenshot(shot)


async def test_hostile_key_is_shown_as_text(browser, site: Site, tmp_path):
    await site.store.put(site.bucket, XSS, b"x")
    await site.store.put(site.bucket, "<svg onload=alert(3)>/inner.txt", b"y")
    page = await sign_in(browser, site)
    await open_folder(page, site)
    await row(page, XSS).wait_for()
    assert await row(page, XSS).locator(".c-name").inner_text() == XSS
    assert await row(page, "<svg onload=alert(3)>/").count() == 1
    # ... and in the title and breadcrumbs inside that folder.
    await row(page, "<svg onload=alert(3)>/").locator("a.name").click()
    await folder_ready(page, f"{site.bucket}/<svg onload=alert(3)>/")
    await expect(page.locator("#crumbs li").last).to_have_text("<svg onload=alert(3)>")
    await row(page, "inner.txt").wait_for()
    await page.go_back()
    await folder_ready(page, site.bucket)
    # A hostile name picked for upload is text in the queue and the listing too.
    local = tmp_path / "<img src=y onerror=alert(2)>.txt"
    local.write_bytes(b"z")
    await page.set_input_files("#pick-files", str(local))
    await uploads_settled(page, 1)
    await row(page, local.name).wait_for()
    assert await page.locator("main img, main svg").count() == 0
    assert page.dialogs == []


async def test_spanish_from_accept_language_and_the_switch(browser, site: Site):
    page = await sign_in(browser, site, locale="es-ES")
    await open_folder(page, site)
    assert await page.get_attribute("html", "lang") == "es"
    assert await page.inner_text("#drop-title") == "Suelte aquí archivos o carpetas"
    assert await page.inner_text("#pick-folder-button") == "Elegir una carpeta…"
    await page.click("#lang-switch")
    await page.wait_for_selector("html[lang=en]", state="attached")
    await folder_ready(page, site.bucket)
    assert await page.inner_text("#drop-title") == "Drop files or folders here"
    assert page.url.endswith(f"#/{site.bucket}/")  # the switch keeps the folder


async def test_conflicts_are_never_overwritten_unless_chosen(browser, site: Site, tmp_path):
    await site.store.put(site.bucket, "same.txt", b"old bytes")
    (tmp_path / "same.txt").write_bytes(b"new bytes")
    page = await sign_in(browser, site)
    await open_folder(page, site)
    await page.wait_for_selector("#dropzone", state="visible")

    async def upload_and_choose(choice: str, total: int) -> dict[str, str]:
        await page.set_input_files("#pick-files", str(tmp_path / "same.txt"))
        await page.wait_for_selector("#conflict[open]")
        assert "same.txt" in await page.inner_text("#conflict-text")
        await page.click(f"#conflict-{choice}")
        return await uploads_settled(page, total)

    state = await upload_and_choose("skip", 1)
    assert state["skipped"] == "1" and state["done"] == "0"
    assert await site.store.get(site.bucket, "same.txt") == b"old bytes"

    state = await upload_and_choose("rename", 2)
    assert state["done"] == "1"
    assert await site.store.get(site.bucket, "same.txt") == b"old bytes"
    assert await site.store.get(site.bucket, "same (1).txt") == b"new bytes"

    state = await upload_and_choose("overwrite", 3)
    assert state["done"] == "2"
    assert await site.store.get(site.bucket, "same.txt") == b"new bytes"


async def test_progress_while_an_upload_is_under_way(browser, site: Site, tmp_path):
    big = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024)
    big.write_bytes(data)
    page = await sign_in(browser, site)
    await open_folder(page, site)
    cdp = await page.context.new_cdp_session(page)
    # A slow link (DevTools' network emulation), so the upload is seen in flight.
    await cdp.send("Network.enable")
    slow = {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 512 * 1024}
    await cdp.send("Network.emulateNetworkConditions", slow)
    await page.set_input_files("#pick-files", str(big))

    async def under_way() -> bool:
        return await page.evaluate(
            "() => { const b = document.getElementById('overall-bar'); return b.value > 0 && b.value < b.max * 0.8; }"
        )

    await eventually(under_way, timeout=30, what="the upload under way")
    assert "big.bin" in await page.inner_text("#active-list")
    assert "/s" in await page.inner_text("#overall-label")  # speed and time left are shown
    shot = tmp_path / "upload-progress.png"
    await page.screenshot(path=str(shot))
    keep_screenshot(shot)
    await cdp.send("Network.emulateNetworkConditions", {**slow, "latency": 0, "uploadThroughput": -1})
    state = await uploads_settled(page, 1)
    assert state["done"] == "1"
    stored = await site.store.get(site.bucket, "big.bin")
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
