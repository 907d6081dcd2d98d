"""Wiring: the auth pieces create_app installs, auth switched off, configuration checks, documented settings."""

import dataclasses
import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.auth import bootstrap
from s3gate.auth.config import MAX_DURATION, AuthConfig, check, parse_duration, utc_time
from s3gate.auth.rules import Rule
from s3gate.auth.throttle import ThrottleConfig
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


# The smallest value each auth setting accepts (one less is refused).
SMALLEST = {
    "password_min_length": 8, "session_ttl": 60, "password_cache_ttl": 0, "login_delay": 0.0,
    "login_max_failures": 1, "login_max_failures_per_address": 1, "login_lockout": 1, "admin_password": "x" * 8,
}


def test_the_smallest_auth_settings_start_and_reach_the_auth_room(tmp_path):
    settings = make_settings(
        tmp_path, **SMALLEST, public="files/pub:read,list;photos:read\nshare/in:write", audit_log="-",
        users_db="u.db", secret_file="/s/secret", public_url="https://files.example.org/",
    )
    assert check(settings) == AuthConfig(
        enabled=True, data_dir=str(tmp_path / "data"), users_db="u.db", secret_file="/s/secret",
        password_min_length=8, session_ttl=60, password_cache_ttl=0,
        throttle=ThrottleConfig(delay=0.0, max_failures=1, max_failures_per_address=1, lockout=1.0),
        public=(Rule.parse("files/pub:read,list"), Rule.parse("photos:read"), Rule.parse("share/in:write")),
        audit_log="-", public_url="https://files.example.org/",
    )


@pytest.mark.parametrize(
    "name, value",
    [("password_min_length", 7), ("session_ttl", 59), ("password_cache_ttl", -1), ("login_delay", -0.5),
     ("login_max_failures", 0), ("login_max_failures_per_address", 0), ("login_lockout", 0), ("admin_password", "x" * 7)],
)
def test_one_below_the_smallest_is_refused_naming_the_setting(tmp_path, name, value):
    with pytest.raises(ConfigError) as caught:
        check(make_settings(tmp_path, **{**SMALLEST, name: value}))
    assert name in str(caught.value)


def test_every_bad_auth_setting_is_named_at_once(tmp_path):
    with pytest.raises(ConfigError) as caught:
        check(make_settings(tmp_path, session_ttl=1, login_lockout=0, public="files:fly"))
    assert all(name in str(caught.value) for name in ("session_ttl", "login_lockout", "public"))


# -- token lifetimes: `tokens create --expires` and POST /api/tokens {"expires": ...} ----------
@pytest.mark.parametrize(
    "given, seconds",
    [
        ("3600", 3600.0), ("1", 1.0), ("0.5", 0.5), (" 90m ", 5400.0), ("12H", 43200.0), ("30d", 30 * 86400.0),
        ("1y", 365 * 86400.0), ("100y", MAX_DURATION), (1, 1.0), (2.5, 2.5),
        ("never", None), (" Never ", None), ("none", None), ("", None), (None, None),  # no expiry
    ],
)
def test_token_lifetimes_as_documented(given, seconds):
    """README: --expires 3600, 90m, 12h, 30d, 1y; at most 100y; default never (an empty form field too)."""
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["0", 0, -1, -5, "-1", 0.0, -0.5, True, "soon", "1e9", "101y", MAX_DURATION + 1])
def test_token_lifetimes_refused_name_the_value(given):
    with pytest.raises(ValueError, match="bad duration") as caught:
        parse_duration(given)
    assert repr(given) in str(caught.value)  # the line says what was refused


def test_any_stored_time_is_a_date():
    """Listing never fails on a stored expiry: the largest timestamp a datetime holds is still one."""
    top = dt.datetime.max.replace(tzinfo=dt.UTC)
    assert utc_time(top.timestamp()) == top  # a float rounds up to the first second of year 10000
    assert utc_time(float("inf")) == utc_time(float("nan")) == top
    assert utc_time(0) == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# -- first start (s3gate serve / ./run.sh): the admin user ------------------------------------
def test_first_start_is_in_the_audit_log_without_the_password(tmp_path):
    password = bootstrap.ensure_admin(make_settings(tmp_path))
    text = (tmp_path / "data" / "audit.log").read_text()
    [entry] = [json.loads(line) for line in text.splitlines()]
    del entry["ts"]
    assert entry == {"event": "user_created", "via": "bootstrap", "target": "admin", "detail": "admin", "outcome": "ok"}
    assert password not in text


def test_the_launcher_says_auth_is_off_on_loopback_too(tmp_path, capsys):
    bootstrap.run(make_settings(tmp_path, auth=False, host="127.0.0.1"), {})
    out, err = capsys.readouterr()
    assert "authentication is off" in err and "AUTHENTICATION IS OFF" not in err and out == ""
    assert not (tmp_path / "data" / "admin-password").exists()


def test_the_first_start_banner_is_out_before_the_server_starts(tmp_path):
    """The launcher then starts gunicorn on the same stdout (a pipe under systemd or docker): the
    password must not wait in the launcher's buffer. Here the process ends without flushing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3GATE_") and k != "PYTHONUNBUFFERED"}
    env["S3GATE_DATA_DIR"] = str(tmp_path / "data")
    code = "import os; from s3gate import settings; from s3gate.auth import bootstrap; bootstrap.run(settings.load(), {}); os._exit(0)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    password = (tmp_path / "data" / "admin-password").read_text().strip()
    assert f"password: {password}" in proc.stdout, proc.stderr


def test_the_first_start_banner_names_the_file_that_keeps_the_password(tmp_path, capsys):
    """The banner is shown once: it tells where the only other copy of the password is."""
    bootstrap.run(make_settings(tmp_path), {})
    out = capsys.readouterr().out
    kept = tmp_path / "data" / "admin-password"
    assert f"password: {kept.read_text().strip()}\n" in out
    assert f"It is also in {kept} (readable only by you)" in out
