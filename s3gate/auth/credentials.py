"""Random secrets handed to clients: API tokens and session ids.

Both carry 256 bits from ``secrets`` and are stored only as their SHA-256
digest: with that much entropy a slow hash adds nothing, and a stolen
database yields nothing usable. Tokens carry the ``s3g_`` prefix so they are
recognisable (secret scanners, logs, the Basic-password form); a bearer
value without it is not ours.
"""

from __future__ import annotations

import hashlib
import re
import secrets

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
