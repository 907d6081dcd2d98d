"""Integration fixtures: a real SeaweedFS, a real gateway on loopback, real curl and wget.

- ``seaweed``: one ``weed mini`` per session (free loopback ports, data in a
  temp dir removed at the end).
- ``store``: what really landed in S3 (``helpers.Store``).
- ``gateway`` / ``start_gateway``: ``create_app(settings)`` served by
  ``helpers.GatewayServer`` on 127.0.0.1 and a free port.

Everything else the tests share (curl, run, eventually, raw HTTP) is in helpers.py.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from s3gate.app import create_app
from s3gate.embedded import Credentials, SeaweedFS
from tests.integration.helpers import Gateway, GatewayServer, Store, settings_for


@pytest.fixture(scope="session")
def seaweed():
    root = Path(tempfile.mkdtemp(prefix="s3gate-it-"))
    creds = Credentials("it" + secrets.token_hex(6), secrets.token_urlsafe(24))
    # Hundreds of test buckets come and go: room for their volumes whatever
    # the free disk (volumes are sparse files; nothing is preallocated).
    server = SeaweedFS(root / "seaweedfs", credentials=creds, volume_max=2000)
    server.start()
    try:
        yield server
    finally:
        # The data is thrown away: don't wait long for a graceful stop (it
        # usually takes ~2 s, but was seen taking over 10 s after a full run).
        server.stop(timeout=3)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def store(seaweed) -> Store:
    return Store(seaweed)


@pytest.fixture
async def bucket(store) -> AsyncIterator[str]:
    """A fresh, empty bucket in SeaweedFS (overrides the moto one of tests/conftest.py).

    Dropped afterwards: each bucket holds volumes of its own in SeaweedFS,
    and a full run makes hundreds (it ran out of volumes at ~80 otherwise).
    """
    name = await store.new_bucket()
    yield name
    await asyncio.to_thread(store.drop_bucket, name)


@pytest.fixture
def gateway_settings(seaweed, tmp_path):
    def make(**overrides: Any):
        return settings_for(seaweed, tmp_path / "gateway-data", **overrides)

    return make


@pytest.fixture
async def start_gateway(gateway_settings):
    servers: list[GatewayServer] = []

    async def start(*, handler_cancellation: bool = False, **overrides: Any) -> Gateway:
        settings = gateway_settings(**overrides)
        server = GatewayServer(create_app(settings), handler_cancellation=handler_cancellation)
        await server.start_server()
        servers.append(server)
        return Gateway(server, settings)

    yield start
    while servers:
        await servers.pop().close()


@pytest.fixture
async def gateway(start_gateway) -> Gateway:
    return await start_gateway()
