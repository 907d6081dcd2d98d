"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright's async API, against the real gateway and SeaweedFS.

``./run.sh test`` installs chromium (apt-get, in run.sh's system_pieces) and
Playwright (the test extras); ``playwright install`` is never run: the
browser is the system's. Playwright's async API shares the test's event loop
with the gateway (aiohttp's TestServer, see tests/integration/conftest.py),
so neither blocks the other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from s3gate import keys
from s3gate.auth.rules import Rule
from tests.integration import conftest as integration
from tests.integration.conftest import Gateway, Store

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


@pytest.fixture
async def browser():
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
    gw = await start_gateway(auth=True, login_delay=0)
    bucket = await store.new_bucket()
    service = gw.app[keys.AUTH]
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse(f"{bucket}:all"))
    await service.add_user("bob", PASSWORD)
    await service.grant("bob", Rule.parse(f"{bucket}:read,list"))
    await service.grant("bob", Rule.parse(f"{bucket}/mixed/ok:write"))
    return Site(gw, bucket, store)


def keep_screenshot(path: Path) -> None:
    """A test's screenshot, also copied to docs/screenshots/ for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / path.name)
