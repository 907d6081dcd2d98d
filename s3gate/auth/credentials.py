"""Random secrets handed to clients: API tokens and session ids.

Both carry 256 bits from ``secrets`` and are stored only as their SHA-256
digest: with that much entropy a slow hash adds nothing, and a stolen
database yields nothing usable. Tokens carry the ``s3g_`` prefix so they are
recognisable (secret scanners, logs, the Basic-password form); a bearer
value without it is not ours.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from ..errors import ConfigError

TOKEN_PREFIX = "s3g_"
_TOKEN_RE = re.compile(r"^s3g_[A-Za-z0-9_-]{43}$")
_SESSION_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_token_id() -> str:
    """Public handle for listing and revoking; reveals nothing about the token."""
    return secrets.token_hex(6)


def is_token(value: str) -> bool:
    """Of our kind (prefix), whether or not well formed."""
    return value.startswith(TOKEN_PREFIX)


def well_formed_token(value: str) -> bool:
    return bool(_TOKEN_RE.match(value))


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def well_formed_session(value: str) -> bool:
    return bool(_SESSION_RE.match(value))


def load_or_create_key(path: Path) -> bytes:
    """A 32-byte server secret kept in a private file, created on first use.

    Safe when several workers start at once: the key is written to a private
    temporary file and linked into place, so nobody reads a half-written key
    and every worker ends up with the same one (as the link-signing key).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            key = bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            pass
        except ValueError:
            key = b""
        else:
            if len(key) >= 32:
                return key
        if path.exists():
            raise ConfigError(f"{path} is damaged; delete it to make a new one")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_bytes(32).hex())
        try:
            os.link(tmp, path)  # fails if another worker won the race: read theirs
        except FileExistsError:
            continue
        finally:
            tmp.unlink()
    raise ConfigError(f"could not create the key file {path}")
