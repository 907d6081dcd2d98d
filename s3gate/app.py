"""create_app(settings) and the zero-argument factory gunicorn calls.

The only module that imports every room. Resources (the S3 client, the
link-signing key, the users database) open and close in cleanup_ctx.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

from aiohttp import web

from . import keyring, keys, logformat, metrics
from . import settings as settings_mod
from .auth.database import database_path, is_server_url
from .auth.sql import open_store
from .errors import ConfigError
from .http import authn, middlewares, resumable, routes
from .http.accesslog import AccessLogger
from .http.cursors import CursorBox
from .http.links import LinkSigner
from .http.metrics import metrics_middleware
from .http.server import GatewayRunner
from .http.uploads import UploadRegistry
from .memory import pin_mmap_threshold
from .settings import Settings
from .storage.budget import MemoryBudget
from .storage.journal import DatabaseEntries, FileEntries, JournalEntries, UploadJournal, sweep_forever
from .storage.s3 import Storage

log = logging.getLogger("s3gate")


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    async with Storage.open(app[keys.SETTINGS], observe=metrics.observe_s3) as storage:
        app[keys.STORAGE] = storage
        yield


async def _links_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    key = await asyncio.to_thread(keyring.server_key, settings.data_dir, settings.secret_file, "link-signing")
    app[keys.LINKS] = signer = LinkSigner(key)
    app[keys.CURSORS] = CursorBox(signer.derive("listing-cursors"))
    yield


async def _journal_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    async with contextlib.AsyncExitStack() as stack:
        where: JournalEntries
        if is_server_url(settings.users_db):
            # Several instances: entries live in the shared database (a small pool of its own),
            # so any instance's sweeper can abort what a dead instance left.
            store = await open_store(settings.data_dir, settings.users_db, pool_size=2)  # a few statements a round
            stack.push_async_callback(store.close)
            where = DatabaseEntries(store, settings.upload_sweep_seconds)
        else:
            where = await asyncio.to_thread(FileEntries, Path(settings.data_dir) / "uploads")
        app[keys.JOURNAL] = journal = await asyncio.to_thread(UploadJournal, where)  # reads /proc
        # From start-up on: abort the uploads no live request owns (a worker killed
        # mid-upload, an abort that failed while S3 was down); stale ones too if set.
        sweeper = asyncio.create_task(
            sweep_forever(
                journal,
                app[keys.STORAGE],
                settings.abort_stale_uploads_hours,
                every=settings.upload_sweep_seconds,
                also=lambda: resumable.sweep_expired(app),  # expired upload sessions: their own rows, not the journal's
            )
        )
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


def create_app(settings: Settings) -> web.Application:
    """The whole wiring on one screen: middlewares, resources, signal hooks, routes."""
    auth = authn.checked_config(settings)  # None when auth is off: then nothing of it is installed
    app = web.Application(
        middlewares=[
            metrics_middleware,  # outermost: counts and times every request as the client got it
            middlewares.request_id_middleware,
            middlewares.error_middleware,
            # Inside the error middleware, so auth errors render like every other.
            *([authn.authn_middleware] if auth else []),
        ],
        # Only read()/post()/json() honour this; uploads stream and have their own limits.
        client_max_size=1024 * 1024,
    )
    app[keys.SETTINGS] = settings
    app[keys.BUDGET] = MemoryBudget(settings.upload_memory_budget, observe=metrics.observe_budget)
    metrics.BUDGET_TOTAL.set(settings.upload_memory_budget)
    app[keys.UPLOADS] = UploadRegistry()

    app.cleanup_ctx.append(_storage_ctx)
    app.cleanup_ctx.append(_links_ctx)
    app.cleanup_ctx.append(_journal_ctx)
    if auth:
        app[keys.AUTH_CONFIG] = auth
        app[keys.POLICY] = authn.Policy()  # what s3gate.http.access asks; absent = everything allowed
        app.cleanup_ctx.append(authn.auth_ctx(auth))  # the audit log and the users store
    app.cleanup_ctx.append(resumable.sessions_ctx)  # after auth's: its store, or one of its own

    app.on_response_prepare.append(middlewares.stamp_request_id)  # X-Request-Id on streamed responses too
    if auth:
        app.on_response_prepare.append(authn.private_when_authenticated)
    app.on_shutdown.append(app[keys.UPLOADS].on_shutdown)

    routes.setup(app, auth=auth is not None)
    return app


def configure_logging(settings: Settings) -> None:
    logformat.configure(settings.log_level, settings.log_format)  # text, or one JSON object per line
    # botocore logs request details (headers, signatures) at DEBUG: never let them through.
    logging.getLogger("botocore").setLevel(max(logging.INFO, logging.getLogger().level))
    logging.getLogger("aiobotocore").setLevel(max(logging.INFO, logging.getLogger().level))


async def app_factory() -> web.AppRunner:
    """gunicorn entry: `gunicorn s3gate.app:app_factory -k aiohttp.GunicornWebWorker`.

    Returns a runner so the worker uses our shutdown_timeout (kept below
    gunicorn's graceful timeout, so aborts finish before the worker is killed).
    """
    settings = bootable_settings()
    configure_logging(settings)
    _warn_if_no_users(settings)
    pin_mmap_threshold()
    return make_runner(create_app(settings), settings)


def _warn_if_no_users(settings: Settings) -> None:
    # gunicorn started by hand from another directory would quietly open a new,
    # empty users database there (`s3gate serve` creates the admin first). Once, at boot.
    if not settings.auth or is_server_url(settings.users_db):
        return
    users = database_path(settings.data_dir, settings.users_db)
    if not users.exists():
        log.warning(
            "no users database at %s: starting with an empty one, so nobody can sign in; "
            "set S3GATE_DATA_DIR to the gateway's data directory, or add a user: "
            "S3GATE_DATA_DIR=%s ./run.sh users add NAME --admin",
            users.resolve(),
            Path(settings.data_dir).resolve(),
        )


def bootable_settings() -> Settings:
    """The settings a worker can boot with, or one line on standard error and exit 3.

    Called by every worker (app_factory) and, with s3gate.gunicorn_conf, once by
    gunicorn's arbiter before it forks any.
    """
    try:
        settings = settings_mod.load()
    except ConfigError as exc:
        _refuse_to_boot(f"configuration error: {exc}")
    if settings.embedded:
        # Only `s3gate serve` starts the embedded SeaweedFS (and hands its endpoint to
        # gunicorn); a bare gunicorn without an endpoint would answer every request 502.
        _refuse_to_boot(
            "no S3 store: set S3GATE_S3_ENDPOINT (and S3GATE_S3_ACCESS_KEY, S3GATE_S3_SECRET_KEY), "
            "or run `s3gate serve` (./run.sh), which starts the embedded one"
        )
    return settings


def _refuse_to_boot(reason: str) -> NoReturn:
    # One line, no traceback; gunicorn's WORKER_BOOT_ERROR (3) makes the arbiter
    # stop ("Worker failed to boot") instead of respawning the worker forever.
    print(f"s3gate: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(3)


def make_runner(app: web.Application, settings: Settings, **kwargs: Any) -> GatewayRunner:
    """The runner production uses (tests serve the app through it too)."""
    return GatewayRunner(
        app,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=logging.getLogger("s3gate.access"),
        access_log_class=AccessLogger,
        # The request body reader's base buffer: with READ_CHUNK it bounds what
        # every upload connection holds outside the upload budget.
        read_bufsize=16 * 1024,
        **kwargs,
    )
