"""Resumable uploads in real Chromium against the real gateway and SeaweedFS.

A 200 MiB file goes through an upload session (40 parts of 5 MiB here). Each
test cuts it mid-way at a known point: once S3 holds at least a quarter of
the parts, the test takes the gateway's whole upload memory budget, so every
part request after that waits unread (TCP backpressure, nothing fails) —
then the real cut: the browser goes offline through DevTools, the gateway
restarts, or the page is closed and opened again. The budget is given back and the page must finish
by itself, sending again only what S3 does not hold. What the page sent is
counted from the requests Chromium made; what landed is read from SeaweedFS.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import pytest_asyncio

from s3gate import keys
from tests.integration.helpers import PART, eventually
from tests.ui.conftest import Site, keep_screenshot, module_site, restart_gateway
from tests.ui.test_page import open_folder, uploads_settled

# One gateway, one Chromium and one sign-in for the module (seconds each on a
# busy machine); each test sends its own copy of the file in a tab of its own.
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SIZE = 200 * 1024 * 1024
PARTS = SIZE // PART  # 40


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("resume") / "big.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for _ in range(SIZE // (8 * 1024 * 1024)):
            chunk = os.urandom(8 * 1024 * 1024)
            digest.update(chunk)
            fh.write(chunk)
    return path, digest.hexdigest()


def named(big_file: tuple[Path, str], name: str) -> Path:
    """The same 200 MiB under another name (a hard link): each test uploads its own key."""
    path = big_file[0].with_name(name)
    if not path.exists():
        os.link(big_file[0], path)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(seaweed, store, tmp_path_factory):
    async with module_site(seaweed, store, tmp_path_factory.mktemp("resume-gateway") / "data") as shared:
        yield shared


def part_puts(page) -> list[int]:
    """Every part PUT the page starts, by part number (a request cut short counts too)."""
    started: list[int] = []

    def seen(request) -> None:
        if request.method == "PUT" and "/api/uploads/" in request.url and "/parts/" in request.url:
            started.append(int(request.url.rsplit("/", 1)[1]))

    page.on("request", seen)
    return started


async def freeze_once_a_quarter_is_stored(site: Site, key: str) -> None:
    """Wait until S3 holds >= a quarter of the parts, then hold the gateway's whole budget."""

    async def quarter() -> bool:
        return await site.store.parts_done(site.bucket, key) >= PARTS // 4

    await eventually(quarter, 60, "a quarter of the parts in S3")
    budget = site.gateway.app[keys.BUDGET]
    await budget.acquire(budget.total)  # granted once the parts being sent have landed


def thaw(site: Site) -> None:
    budget = site.gateway.app[keys.BUDGET]
    budget.release(budget.total)


async def stored_digest(site: Site, key: str) -> str:
    return hashlib.sha256(await site.store.get(site.bucket, key)).hexdigest()


async def test_network_drop_pauses_and_resumes_by_itself(page, site: Site, big_file, tmp_path):
    path, digest = big_file
    await open_folder(page, site)
    started = part_puts(page)
    await page.set_input_files("#pick-files", str(path))

    await freeze_once_a_quarter_is_stored(site, "big.bin")
    await page.context.set_offline(True)  # DevTools: the network is gone; new requests fail at once
    thaw(site)  # the parts already on their way land; the next ones cannot leave the browser
    await page.wait_for_selector('#uploads[data-paused="1"]', state="attached", timeout=30_000)
    assert await page.locator("#active-list .item.sending").count() == 1  # paused, not failed
    # Paused: no speed and no time left counting down, only the pause (read in one go:
    # the same render writes both).
    paused, label = await page.evaluate(
        "() => [document.getElementById('uploads').dataset.paused, document.getElementById('overall-label').textContent]"
    )
    assert paused == "1" and "paused" in label and "left" not in label and "/s" not in label, label
    held = await site.store.parts_done(site.bucket, "big.bin")
    assert PARTS // 4 <= held < PARTS  # cut mid-way
    shot = tmp_path / "upload-paused.png"
    await page.screenshot(path=str(shot))
    keep_screenshot(shot)
    await page.context.set_offline(False)  # back online: it goes on by itself

    state = await uploads_settled(page, 1)
    assert state["done"] == "1" and state["failed"] == "0", state
    assert await stored_digest(site, "big.bin") == digest
    assert await site.store.open_uploads(site.bucket) == []
    assert sorted(set(started)) == list(range(1, PARTS + 1))
    assert (len(started) - PARTS) * PART < SIZE / 4, started  # re-sent: less than a quarter


async def test_gateway_restart_mid_upload_resends_only_what_was_cut(page, site: Site, big_file):
    path, digest = named(big_file, "big-restart.bin"), big_file[1]
    await open_folder(page, site)
    started = part_puts(page)
    await page.set_input_files("#pick-files", str(path))

    await freeze_once_a_quarter_is_stored(site, path.name)
    await restart_gateway(site)  # the parts waiting in the old gateway are cut off; the module closes the new one
    state = await uploads_settled(page, 1)
    assert state["done"] == "1" and state["failed"] == "0", state
    assert await stored_digest(site, path.name) == digest
    assert await site.store.open_uploads(site.bucket) == []
    sent_again = len(started) - PARTS
    assert 0 < sent_again, started  # the parts cut off were sent again...
    assert sent_again * PART < SIZE / 4, started  # ...and little else
    assert sorted(set(started)) == list(range(1, PARTS + 1))


async def test_after_a_reload_only_missing_parts_are_sent(page, site: Site, big_file):
    path, digest = named(big_file, "big-reload.bin"), big_file[1]
    await open_folder(page, site)
    await page.set_input_files("#pick-files", str(path))
    await freeze_once_a_quarter_is_stored(site, path.name)
    context = page.context
    await page.close()  # the tab is gone, its requests with it
    thaw(site)

    page = await context.new_page()
    started = part_puts(page)
    statuses: list[dict] = []

    async def on_response(response) -> None:
        if response.request.method == "GET" and "/api/uploads/" in response.url and "/parts/" not in response.url:
            statuses.append(await response.json())

    page.on("response", on_response)
    await open_folder(page, site)
    # The page lists the unfinished upload...
    await page.wait_for_selector('#unfinished[data-count="1"]', state="visible")
    assert await page.locator("#unfinished-list .item", has_text=f"{site.bucket}/{path.name}").count() == 1
    # ... and the same file picked again is matched to it: only the missing parts go.
    await page.set_input_files("#pick-files", str(path))
    state = await uploads_settled(page, 1)
    assert state["done"] == "1" and state["failed"] == "0", state
    assert await stored_digest(site, path.name) == digest
    assert await site.store.open_uploads(site.bucket) == []

    assert len(statuses) == 1, statuses  # asked once which parts S3 holds
    missing = statuses[0]["missing"]
    assert 0 < len(missing) <= PARTS - PARTS // 4
    assert sorted(started) == missing  # exactly those, each once
    assert await page.locator("#unfinished").is_hidden()
