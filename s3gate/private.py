"""Files only their owner may read (mode 0600): keys, credentials, passwords, the audit log.

Synchronous: call them at start-up, from the CLI, or through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` (mode 0600), creating its folder; ``exclusive``: FileExistsError if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)  # an older file may have had another mode (the umask never widens it)
        fh.write(data)


def ensure_private_file(path: Path) -> None:
    """Create ``path`` empty and private unless it exists (SQLite's -wal/-shm files inherit its mode)."""
    try:
        write_private(path, b"", exclusive=True)
    except FileExistsError:
        pass


def load_or_create_secret(path: Path, make: Callable[[], bytes]) -> bytes:
    """The contents of ``path``, created with ``make()`` on first use.

    Safe when several workers start at once: the new secret is written to a
    private temporary file and linked into place, so nobody ever reads a
    half-written file and every worker ends up with the same secret.
    """
    for _ in range(3):
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        write_private(tmp, make(), exclusive=True)
        try:
            os.link(tmp, path)  # fails if another worker won the race: read theirs
        except FileExistsError:
            continue
        finally:
            tmp.unlink()
    raise ConfigError(f"could not create {path}")
