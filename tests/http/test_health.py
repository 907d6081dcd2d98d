"""/healthz and /readyz: what each says about the store (issue 7, items 13 and 23)."""

import socket

import pytest

from s3gate import settings as settings_mod
from s3gate.app import create_app


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """botocore's chain finds nothing: no variables, no files (IMDS is off in conftest)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


async def test_readyz_is_503_without_s3_credentials(aiohttp_client, settings, no_aws_credentials):
    app = create_app(settings_mod.replace(settings, s3_access_key="", s3_secret_key=""))
    client = await aiohttp_client(app)
    resp = await client.get("/readyz")
    assert resp.status == 503, await resp.text()
    assert "credentials" in await resp.text()
    assert (await client.get("/healthz")).status == 200  # the store itself is up


async def test_healthz_is_503_while_the_local_store_is_down(aiohttp_client, settings):
    # A bound socket that never listens: connections are refused, and nothing else takes the port.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    try:
        app = create_app(settings_mod.replace(settings, s3_endpoint=f"http://127.0.0.1:{hole.getsockname()[1]}"))
        client = await aiohttp_client(app)
        resp = await client.get("/healthz")
        assert resp.status == 503
        assert "down" in await resp.text()
    finally:
        hole.close()


async def test_healthz_does_not_probe_a_remote_store(aiohttp_client, settings):
    # RFC 5737's TEST-NET: never contacted (a liveness check must not depend on a remote store).
    app = create_app(settings_mod.replace(settings, s3_endpoint="http://192.0.2.1:9000"))
    client = await aiohttp_client(app)
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.text() == "ok\n"


async def test_healthz_is_200_with_the_local_store_up(client):
    resp = await client.get("/healthz")
    assert resp.status == 200 and await resp.text() == "ok\n"
