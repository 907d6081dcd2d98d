"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright's async API, against the real gateway and SeaweedFS.

``./run.sh test`` installs chromium (apt-get, in run.sh's system_pieces) and
Playwright (the test extras); ``playwright install`` is never run: the
browser is the system's. Playwright's async API shares the test's event loop
with the gateway (aiohttp's TestServer, see tests/integration/conftest.py),
so neither blocks the other.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from s3gate import keys
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from s3gate.embedded import SeaweedFS
from tests.integration import conftest as integration
from tests.integration.helpers import Gateway, GatewayServer, Store, settings_for

# The integration suite's fixtures, shared (a real SeaweedFS, the gateway on loopback).
seaweed = integration.seaweed
store = integration.store
gateway_settings = integration.gateway_settings
start_gateway = integration.start_gateway

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
# Nothing in a test may talk beyond loopback: no update checks, sync, field trials or translation.
CHROMIUM_FLAGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@asynccontextmanager
async def chromium():
    """Playwright's driver and Debian's Chromium (about 2 s to start: modules that can share one do)."""
    from playwright.async_api import async_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: ./run.sh test installs it (apt-get install chromium)")
    # Chromium's temp folders go where the test removes them. A short path:
    # its singleton socket must fit a Unix socket address (108 bytes), which
    # pytest's tmp_path does not.
    tmp = tempfile.mkdtemp(prefix="s3g-chr-")
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, env={**os.environ, "TMPDIR": tmp}
            )
            try:
                yield browser
            finally:
                await browser.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def browser():
    async with chromium() as b:
        yield b


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_browser():
    """One Chromium for a module whose tests run in the module's event loop (``pytest.mark.asyncio(loop_scope="module")``)."""
    async with chromium() as b:
        yield b


@dataclass
class Site:
    gateway: Gateway
    bucket: str
    store: Store

    @property
    def base(self) -> str:
        return self.gateway.base


@pytest.fixture
async def site(start_gateway, store) -> Site:
    """The gateway with auth on, a bucket, alice (all rights there) and bob (read and list; write in mixed/ok/)."""
    return await populate(await start_gateway(auth=True, login_delay=0), store)


@asynccontextmanager
async def module_site(seaweed: SeaweedFS, store: Store, data_dir: Path, **overrides: Any) -> AsyncIterator[Site]:
    """A site as ``site`` gives, for a whole module (a module-scoped fixture, in the module's event loop).

    Starting the gateway and making the users costs seconds on a busy
    machine; tests that leave each other's state alone share one. A test may
    swap ``site.gateway.server`` (a restart): whichever serves at the end is closed.
    """
    settings = settings_for(seaweed, data_dir, auth=True, login_delay=0, **overrides)
    server = GatewayServer(create_app(settings))
    await server.start_server()
    gw = Gateway(server, settings)
    try:
        yield await populate(gw, store)
    finally:
        await gw.server.close()


async def populate(gw: Gateway, store: Store) -> Site:
    """A fresh bucket; alice may do all there, bob may read and list it and write in mixed/ok/."""
    bucket = await store.new_bucket()
    service = gw.app[keys.AUTH]
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse(f"{bucket}:all"))
    await service.add_user("bob", PASSWORD)
    await service.grant("bob", Rule.parse(f"{bucket}:read,list"))
    await service.grant("bob", Rule.parse(f"{bucket}/mixed/ok:write"))
    return Site(gw, bucket, store)


async def restart_gateway(site: Site, **changes: Any) -> GatewayServer:
    """The gateway stops (requests in flight are cut off) and starts again on the same port and data.

    ``changes`` are settings changed meanwhile (as an admin would, restarting).
    """
    old = site.gateway.server
    port = old.port
    await old.close()
    site.gateway.settings = dataclasses.replace(site.gateway.settings, **changes)
    new = GatewayServer(create_app(site.gateway.settings))
    new.port = port  # the page's origin (and cookie) stay the same
    await new.start_server()
    site.gateway.server = new
    return new


# -- signed-in tabs ----------------------------------------------------------------------
async def new_page(browser, **context_options):
    """A tab in a context of its own (``storage_state=`` to start signed in)."""
    context = await browser.new_context(accept_downloads=True, **context_options)
    page = await context.new_page()
    page.dialogs = []  # any alert()/confirm() the page opens: the page itself never uses them

    async def on_dialog(dialog):
        page.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return page


async def sign_in(browser, site: Site, user: str = "alice", **context_options):
    page = await new_page(browser, **context_options)
    await page.goto(site.base + "/")
    assert "/login?next=" in page.url  # a stranger is sent to the form first
    await page.fill("#username", user)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(site.base + "/")
    return page


async def session_of(browser, site: Site, user: str = "alice") -> dict:
    """Sign in once; the cookies, for ``new_page(browser, storage_state=...)`` in the tests of a module."""
    page = await sign_in(browser, site, user)
    state = await page.context.storage_state()
    await page.context.close()
    return state


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alice(module_browser, site) -> dict:
    """alice's cookies, signed in once, in a module that shares one site (its own module-scoped ``site``)."""
    return await session_of(module_browser, site)


@pytest_asyncio.fixture(loop_scope="module")
async def page(module_browser, alice):
    """A tab in a context of its own, signed in as alice, for a module that shares one site."""
    page = await new_page(module_browser, storage_state=alice)
    yield page
    await page.context.close()


def keep_screenshot(path: Path) -> None:
    """A test's screenshot, also copied to docs/screenshots/ for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / path.name)
