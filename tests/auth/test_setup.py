"""Wiring: the auth pieces create_app installs, auth switched off, configuration checks, documented settings."""

import dataclasses
import logging
from pathlib import Path

import pytest
from aiohttp import web

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.errors import ConfigError
from s3gate.http import access
from s3gate.http.authn import Policy, authn_middleware, checked_config, private_when_authenticated
from s3gate.netaddr import is_loopback_host, is_loopback_url

from .conftest import build_app, make_settings, render_errors, request_id

AUTH_SETTINGS = [
    "auth", "admin_password", "users_db", "password_min_length", "session_ttl", "password_cache_ttl",
    "login_delay", "login_max_failures", "login_max_failures_per_address", "login_lockout", "public", "audit_log",
]


def test_the_app_lists_the_auth_wiring(tmp_path):
    from s3gate.app import create_app
    from s3gate.http import middlewares
    from s3gate.http.metrics import metrics_middleware

    app = create_app(make_settings(tmp_path, s3_endpoint="http://127.0.0.1:9"))
    # Inside the error middleware, so auth errors render like every other.
    assert list(app.middlewares) == [
        metrics_middleware,
        middlewares.request_id_middleware,
        middlewares.error_middleware,
        authn_middleware,
    ]
    assert type(app[keys.POLICY]) is Policy  # the auth room's policy, which access.require delegates to
    assert private_when_authenticated in app.on_response_prepare
    assert len(app.cleanup_ctx) == 5  # storage, links, journal, auth and the upload sessions
    assert {r.resource.canonical for r in app.router.routes()} >= {"/login", "/logout", "/api/tokens", "/api/whoami"}


def test_auth_off_the_app_installs_none_of_it(tmp_path):
    from s3gate.app import create_app

    app = create_app(make_settings(tmp_path, auth=False, s3_endpoint="http://127.0.0.1:9"))
    assert keys.POLICY not in app and keys.AUTH_CONFIG not in app
    assert authn_middleware not in app.middlewares and private_when_authenticated not in app.on_response_prepare
    assert len(app.cleanup_ctx) == 4  # storage, links, journal and the upload sessions (anonymous ones)
    assert not {r.resource.canonical for r in app.router.routes()} & {"/login", "/logout", "/api/tokens", "/api/whoami"}


async def test_auth_off_installs_nothing_and_allows_everything(tmp_path, caplog, aiohttp_client):
    caplog.set_level(logging.WARNING)
    settings = make_settings(tmp_path, auth=False)
    app = build_app(settings)
    assert checked_config(settings) is None
    assert keys.POLICY not in app and list(app.middlewares) == [request_id, render_errors]

    async def handler(request):
        await access.require(request, "delete", "files", "x")
        return web.json_response({"user": access.principal_name(request), "allowed": access.allowed(request, "write", "b", "k")})

    app.router.add_get("/x", handler)
    client = await aiohttp_client(app)
    assert await (await client.get("/x")).json() == {"user": None, "allowed": True}
    assert any(r.levelno == logging.WARNING and "authentication is off" in r.getMessage() for r in caplog.records)
    assert not any(r.levelno >= logging.CRITICAL for r in caplog.records)


def test_auth_off_beyond_loopback_is_loud(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    checked_config(make_settings(tmp_path, auth=False, host="0.0.0.0"))
    critical = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any("AUTHENTICATION IS OFF" in m and "0.0.0.0" in m for m in critical)


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("files.example.org", False)],
)
def test_loopback_detection(host, loopback):
    # One check for the open-gateway warning, link_mode and /healthz's store probe.
    assert is_loopback_host(host) is loopback
    assert is_loopback_url(f"http://{host if ':' not in host or host.startswith('[') else f'[{host}]'}:9000/") is loopback


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"public": "files:fly"}, "public"),
        ({"public": "Bad_Bucket:read"}, "public"),
        ({"password_min_length": 4}, "password_min_length"),
        ({"admin_password": "short"}, "admin_password"),
        ({"login_lockout": 0}, "login_lockout"),
        ({"session_ttl": 1}, "session_ttl"),
    ],
)
def test_bad_settings_refuse_to_start(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        checked_config(make_settings(tmp_path, **overrides))


def test_settings_from_the_environment(tmp_path):
    s = settings_mod.load(
        environ={"S3GATE_AUTH": "0", "S3GATE_LOGIN_DELAY": "0.5", "S3GATE_PUBLIC": "files/pub:read,list"}, use_file=False
    )
    assert s.auth is False and s.login_delay == 0.5 and s.public == "files/pub:read,list"


def test_every_auth_setting_is_declared_and_documented():
    fields = {f.name: f for f in dataclasses.fields(settings_mod.Settings)}
    root = Path(__file__).resolve().parents[2]
    doc = "".join(p.read_text() for p in (root / "docs" / "auth.md", root / "README.md") if p.exists())
    for name in AUTH_SETTINGS:
        assert name in fields, name
        assert fields[name].metadata["help"], name
        assert f"| `{name}` |" in doc, name
    assert fields["admin_password"].metadata["secret"] is True
