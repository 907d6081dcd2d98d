"""First start: with no users at all, create ``admin`` so the gateway is never open by default."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from ..private import write_private
from . import audit
from .config import check
from .service import running_service

log = logging.getLogger("s3gate.auth")

ADMIN_NAME = "admin"
PASSWORD_FILE = "admin-password"
T = TypeVar("T")


async def ensure_admin_async(settings) -> str | None:
    """Create ``admin`` if the users database has no user; return a generated password (else None).

    The password is S3GATE_ADMIN_PASSWORD when set (then nothing is written or
    returned: the operator already knows it), otherwise a random one that is
    written to ``<data_dir>/admin-password`` (mode 0600) and returned so the
    launcher can print it once.
    """
    config = check(settings)
    if not config.enabled:
        return None
    async with running_service(config) as service:
        if await service.store.count_users():
            return None
        generated = not settings.admin_password
        password = settings.admin_password or secrets.token_urlsafe(18)
        user = await service.create_first_admin(ADMIN_NAME, password)
        if user is None:
            return None  # another process got there first
        audit.record("user_created", via="bootstrap", target=ADMIN_NAME, detail="admin", outcome="ok")
        if not generated:
            log.info("created user %r (admin) with the password from S3GATE_ADMIN_PASSWORD", ADMIN_NAME)
            return None
        path = Path(settings.data_dir) / PASSWORD_FILE
        await asyncio.to_thread(write_private, path, (password + "\n").encode())
        return password


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(coro), also from code that already runs inside an event loop (then on a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def ensure_admin(settings) -> str | None:
    """Synchronous form for the launcher; safe to call with or without a running event loop."""
    return run_sync(ensure_admin_async(settings))


def run(settings, env: dict[str, str] | None = None) -> None:
    """The launcher's first-start hook (``s3gate serve`` / ``./run.sh``), before workers start.

    Warns loudly when auth is off beyond loopback; creates ``admin`` when the
    users database is empty and prints a generated password exactly once.
    ``env`` is the workers' environment (unused for now; kept for the launcher's call).
    """
    import sys

    from .config import open_warning

    warning = open_warning(settings)
    if warning:
        bar = "!" * 78
        print(f"{bar}\n{warning}\n{bar}", file=sys.stderr, flush=True)
        return
    if not settings.auth:
        print("s3gate: authentication is off (S3GATE_AUTH=0); listening on loopback only", file=sys.stderr, flush=True)
        return
    password = ensure_admin(settings)
    if password:
        path = Path(settings.data_dir) / PASSWORD_FILE
        bar = "=" * 78
        print(
            f"{bar}\n"
            f"s3gate: first start: created the admin account.\n"
            f"    user:     {ADMIN_NAME}\n"
            f"    password: {password}\n"
            f"This is shown once. It is also in {path} (readable only by you).\n"
            f"Change it with: ./run.sh users passwd {ADMIN_NAME}\n"
            f"{bar}",
            flush=True,
        )
