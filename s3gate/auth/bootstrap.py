"""First start: with no users at all, create ``admin`` so the gateway is never open by default."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import secrets
from pathlib import Path

from . import audit
from .config import check
from .service import AuthService

log = logging.getLogger("s3gate.auth")

ADMIN_NAME = "admin"
PASSWORD_FILE = "admin-password"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file may have had another mode
        os.write(fd, text.encode())
    finally:
        os.close(fd)


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
    service = await AuthService.open(config)
    try:
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
        await asyncio.to_thread(_write_private, path, password + "\n")
        return password
    finally:
        await service.close()


def ensure_admin(settings) -> str | None:
    """Synchronous form for the launcher; safe to call with or without a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, ensure_admin_async(settings)).result()
