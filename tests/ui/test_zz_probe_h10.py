import pytest
from tests.ui.test_access import *  # noqa
from tests.ui.test_access import site, alice, page  # noqa
from tests.ui.test_page import open_folder
pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

async def test_probe(page, site):
    await open_folder(page, site)
    await page.wait_for_selector("#dropzone", state="visible")
    for sel, key in [("#pick-folder-button", "Enter"), ("#pick-folder-button", " "), ("#pick-files-button", "Enter"), ("#pick-folder-button", "Enter"), ("#pick-folder-button", " ")]:
        await page.focus(sel)
        try:
            async with page.expect_file_chooser(timeout=3000) as fc:
                await page.keyboard.press(key)
            v = await fc.value
            print(sel, repr(key), "ok", await v.element.get_attribute("id"), flush=True)
        except Exception as e:
            print(sel, repr(key), "FAIL", str(e)[:60], flush=True)
