"""Fixtures for the auth room: a tiny aiohttp app with the real middleware and policy.

The app here has the auth middleware, the login routes and one dummy
handler that asks ``s3gate.http.access`` before answering, so these tests
do not depend on the storage room.
"""

from __future__ import annotations

import time
from pathlib import Path

import argon2
import pytest
from aiohttp import web

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.auth.config import check
from s3gate.auth.service import AuthService
from s3gate.errors import GatewayError
from s3gate.http import access, authn, routes
from s3gate.http.links import LinkSigner

# Cheap argon2id for speed; one test checks the production parameters.
FAST_HASHER = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=argon2.Type.ID)
PASSWORD = "correct horse battery"  # >= 12 characters
ENTRIES = web.AppKey("entries", list)


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# The users database of the test being run: the store-facing tests run once on
# SQLite and once on PostgreSQL (see users_backend below).
_users_db: list[tuple[str, str]] = []  # (users_db, secret_file)


def pytest_generate_tests(metafunc):
    if "users_backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("sqlite_only") is None
        on_postgresql = pytest.param("postgresql", marks=pytest.mark.users_on_postgresql)
        metafunc.parametrize("users_backend", ["sqlite", on_postgresql] if both else ["sqlite"], indirect=True)


@pytest.fixture
def users_backend(request, monkeypatch, tmp_path_factory):
    """Which database this test's users live in; the CLI's environment says the same.

    PostgreSQL needs the shared secret_file (as every instance of a cluster gets).
    """
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database()
        secret = tmp_path_factory.mktemp("secret") / "secret"
        secret.write_text("s" * 48)
        monkeypatch.setenv("S3GATE_USERS_DB", url)
        monkeypatch.setenv("S3GATE_SECRET_FILE", str(secret))
        _users_db.append((url, str(secret)))
        yield "postgresql"
        _users_db.pop()
    else:
        yield "sqlite"


def make_settings(tmp_path: Path, **overrides):
    overrides.setdefault("data_dir", str(tmp_path / "data"))
    if _users_db:
        overrides.setdefault("users_db", _users_db[-1][0])
        overrides.setdefault("secret_file", _users_db[-1][1])
    overrides.setdefault("auth", True)
    overrides.setdefault("login_delay", 0.0)
    return settings_mod.load(environ={}, use_file=False, **overrides)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth_settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
async def service(auth_settings, clock):
    svc = await AuthService.open(check(auth_settings), hasher=FAST_HASHER, clock=clock)
    yield svc
    await svc.close()


# -- the tiny app -------------------------------------------------------------------
@web.middleware
async def request_id(request: web.Request, handler):
    request[keys.REQUEST_ID] = request.headers.get("X-Request-Id", "rid-test")
    return await handler(request)


@web.middleware
async def render_errors(request: web.Request, handler):
    # Stands in for the core's error middleware: domain errors -> status + headers.
    try:
        return await handler(request)
    except GatewayError as exc:
        return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status, headers=exc.headers)


def action_for(method: str, key: str) -> str:
    if method in ("GET", "HEAD"):
        return "list" if key == "" or key.endswith("/") else "read"
    return {"PUT": "write", "POST": "write", "DELETE": "delete"}[method]


async def object_handler(request: web.Request) -> web.Response:
    bucket, key = request.match_info["bucket"], request.match_info["path"]
    action = action_for(request.method, key)
    await access.require(request, action, bucket, key)
    body = {"user": access.principal_name(request), "action": action, "bucket": bucket, "key": key}
    if action == "list":
        body["entries"] = [
            e for e in request.app[ENTRIES] if e.startswith(key) and access.allowed(request, "list", bucket, e)
        ]
    if action == "write":
        await request.read()
    return web.json_response(body)


def build_app(settings, clock=None, entries=(), hasher=FAST_HASHER) -> web.Application:
    """The auth wiring exactly as s3gate.app.create_app lists it, around one dummy handler."""
    auth = authn.checked_config(settings)
    app = web.Application(middlewares=[request_id, render_errors, *([authn.authn_middleware] if auth else [])])
    app[ENTRIES] = list(entries)
    app[keys.SETTINGS] = settings
    app[keys.LINKS] = LinkSigner(b"k" * 32)
    if auth:
        app[keys.AUTH_CONFIG] = auth
        app[keys.POLICY] = authn.Policy()
        app.cleanup_ctx.append(authn.auth_ctx(auth, hasher=hasher, clock=clock))
        app.on_response_prepare.append(authn.private_when_authenticated)
        routes.auth_routes(app.router)
    app.router.add_route("*", "/files/{bucket}/{path:.*}", object_handler)
    return app


@pytest.fixture
def make_client(aiohttp_client, tmp_path, clock):
    """make_client(**settings) -> (client, service): the app started, its service ready for set-up."""

    async def make(entries=(), **overrides):
        settings = make_settings(tmp_path, **overrides)
        app = build_app(settings, clock, entries)
        client = await aiohttp_client(app)
        return client, app[keys.AUTH]

    return make


def basic(name: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
