"""The page's quality in real Chromium: upload limits, the keyboard path, the dark theme, a phone-width screen.

One gateway (with a small upload limit), one Chromium and one sign-in serve
the whole module; each test opens a tab of its own. Colours and focus rings
are read from the browser's computed styles, not from the stylesheet.
"""

from __future__ import annotations

import asyncio
import re

import pytest
import pytest_asyncio

from tests.ui.conftest import Site, keep_screenshot, module_site, new_page, restart_gateway
from tests.ui.test_page import open_folder, uploads_settled

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

LIMIT = 64 * 1024  # max_upload_bytes of this module's gateway
LONG = "a-rather-long-file-name-without-any-spaces-that-must-not-widen-the-page-on-a-phone-0123456789.txt"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(seaweed, store, tmp_path_factory):
    data = tmp_path_factory.mktemp("access-gateway") / "data"
    async with module_site(seaweed, store, data, max_upload_bytes=LIMIT) as shared:
        await store.put(shared.bucket, "readme.txt", b"a row to look at\n")
        await store.put(shared.bucket, "folder/inner.txt", b"a folder to look at\n")
        await store.put(shared.bucket, LONG, b"long\n")
        yield shared


def files(tmp_path, **sizes: int) -> list[str]:
    paths = []
    for name, size in sizes.items():
        path = tmp_path / name.replace("_", ".")
        path.write_bytes(b"x" * size)
        paths.append(str(path))
    return paths


async def failures(page) -> list[str]:
    return await page.locator("#failure-list li").all_inner_texts()


# -- limits ------------------------------------------------------------------------------
async def test_over_the_limit_is_listed_while_the_others_complete(page, site: Site, tmp_path):
    await open_folder(page, site, "limit/")
    await page.set_input_files("#pick-files", files(tmp_path, a_txt=100, b_txt=LIMIT, big_bin=LIMIT + 1))
    state = await uploads_settled(page, 3)
    assert state["done"] == "2" and state["failed"] == "1", state
    [failure] = await failures(page)
    assert "limit/big.bin" in failure and "over the size limit" in failure
    assert sorted(await site.store.keys(site.bucket, "limit/")) == ["limit/a.txt", "limit/b.txt"]
    # What will not be sent is not waited for: the bar ends full, the label counts what went.
    bar = await page.evaluate("() => { const b = document.getElementById('overall-bar'); return [b.value, b.max]; }")
    assert bar == [100 + LIMIT, 100 + LIMIT], bar
    assert "2 of 3 files" in await page.inner_text("#overall-label")


async def test_a_413_from_the_gateway_is_listed_as_over_the_limit(page, site: Site, tmp_path):
    """The page knew a larger limit (it was lowered and the gateway restarted since): the gateway's 413 is the reason shown."""
    await open_folder(page, site, "late/")
    smaller = LIMIT // 2
    await restart_gateway(site, max_upload_bytes=smaller)
    await page.set_input_files("#pick-files", files(tmp_path, a_txt=100, big_bin=smaller + 1, c_txt=200))
    state = await uploads_settled(page, 3)
    assert state["done"] == "2" and state["failed"] == "1", state
    [failure] = await failures(page)
    assert "late/big.bin" in failure and "over the size limit" in failure and "exceeds the limit" in failure
    assert sorted(await site.store.keys(site.bucket, "late/")) == ["late/a.txt", "late/c.txt"]


# -- the keyboard ----------------------------------------------------------------------------
FOCUSED = """() => { const e = document.activeElement, s = getComputedStyle(e);
                     return {id: e.id, visible: e.matches(':focus-visible'),
                             outline: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }"""


async def tab_to(page, target: str) -> dict:
    """Press Tab (from wherever the focus is) until ``target`` has the focus; how its focus looks."""
    for _ in range(40):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED)
        if focused["id"] == target:
            return focused
    raise AssertionError(f"Tab never reached #{target}")


async def test_keyboard_reaches_and_opens_the_pickers_with_a_visible_focus(page, site: Site):
    # One listener for the whole test, set before the page loads: page.expect_file_chooser()
    # subscribes anew (and without waiting) each time, and a picker opened before the
    # subscription lands is missed.
    choosers: asyncio.Queue = asyncio.Queue()
    page.on("filechooser", choosers.put_nowait)
    await open_folder(page, site)
    await page.wait_for_selector("#dropzone", state="visible")

    async def opens(key: str) -> str:
        """Press key on the focused control: the id of the file input whose picker opened."""
        await page.keyboard.press(key)
        try:
            chooser = await asyncio.wait_for(choosers.get(), 5)
        except TimeoutError:
            raise AssertionError(f"{key!r} on #{control} opened no file picker") from None
        return await chooser.element.get_attribute("id")

    pickers = {"dropzone": "pick-files", "pick-files-button": "pick-files", "pick-folder-button": "pick-folder"}
    # Tab from the top of the page, as a keyboard user does: the drop zone, then its two buttons.
    for control, picker in pickers.items():
        looks = await tab_to(page, control)
        assert looks["visible"] and looks["outline"] != "none" and looks["width"] >= 2, (control, looks)
        assert [await opens("Enter"), await opens(" ")] == [picker, picker], control
    assert choosers.empty()


# -- colours -----------------------------------------------------------------------------------
# Text and the background it is drawn on (the first ancestor with a non-transparent one).
COLOURS = """(selectors) => {
  const back = (e) => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
                          if (!/^rgba\\(.*, 0\\)$/.test(c) && c !== 'transparent') return c; }
                        return 'rgb(255, 255, 255)'; };
  const out = {};
  for (const s of selectors) { const e = document.querySelector(s);
    out[s] = e ? [getComputedStyle(e).color, back(e)] : null; }
  return out;
}"""
TEXTS = [
    "body",
    "#folder-title",
    "#drop-help",  # muted
    "#crumbs a",  # a link
    "#pick-files-button",  # a button
    "#rows .row .c-size",  # muted, in the table
    "#rows .row a.name",
    "#rows .row button.danger",
    "#filter",
]


def luminance(css: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css)[:3])

    def lin(c: float) -> float:  # WCAG 2.x relative luminance
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def contrast(fg: str, bg: str) -> float:
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


async def test_dark_theme_follows_the_system_and_stays_readable(page, site: Site, tmp_path):
    await open_folder(page, site)
    await page.wait_for_selector("#rows .row button.danger")
    light = await page.evaluate(COLOURS, TEXTS)
    await page.emulate_media(color_scheme="dark")
    dark = await page.evaluate(COLOURS, TEXTS)
    for scheme, colours in (("light", light), ("dark", dark)):
        for selector, pair in colours.items():
            assert pair is not None, selector
            assert contrast(*pair) >= 4.5, (scheme, selector, pair, round(contrast(*pair), 2))
    assert dark["body"] != light["body"]
    assert luminance(dark["body"][1]) < 0.05 < 0.9 < luminance(light["body"][1])  # dark page, light page
    shot = tmp_path / "folder-view-dark.png"
    await page.screenshot(path=str(shot))
    keep_screenshot(shot)


# -- a phone ---------------------------------------------------------------------------------
async def test_phone_width_needs_no_sideways_scrolling(module_browser, alice, site: Site, tmp_path):
    page = await new_page(module_browser, storage_state=alice, viewport={"width": 375, "height": 740})
    try:

        async def fits(what: str) -> None:
            scroll, inner = await page.evaluate("() => [document.scrollingElement.scrollWidth, innerWidth]")
            assert scroll <= inner, (what, scroll, inner)
            # ... and the breadcrumbs are not squeezed into a column, a word a line.
            lines = await page.evaluate(
                """() => [...document.querySelectorAll('#crumbs a')].map((a) =>
                     [a.textContent, a.getClientRects().length, a.getBoundingClientRect().height /
                      parseFloat(getComputedStyle(a).lineHeight)])"""
            )
            assert all(rects == 1 and height < 1.5 for _, rects, height in lines), (what, lines)

        await page.goto(site.base + "/")
        await page.wait_for_selector("#bucket-list a")
        await fits("the bucket list")
        await open_folder(page, site)
        await page.wait_for_selector("#rows .row >> text=readme.txt")
        await fits("a folder")
        # The upload box with a long name failing (over the limit) and one done.
        local = tmp_path / LONG.replace("a-rather", "another")
        local.write_bytes(b"x" * (LIMIT + 1))
        (tmp_path / "small.txt").write_bytes(b"small")
        await page.set_input_files("#pick-files", [str(local), str(tmp_path / "small.txt")])
        await uploads_settled(page, 2)
        await fits("the upload box")
        await page.click("#rows .row >> text=folder/")
        await page.wait_for_selector("#rows .row >> text=inner.txt")
        await fits("a folder with the upload box")
    finally:
        await page.context.close()
