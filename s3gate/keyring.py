"""The gateway's own keys, one per purpose, from one place.

- ``link-signing``: gateway-signed download links (and, derived from it, the
  listing cursors' key);
- ``password-proof``: the keyed hash that proves a Basic password was checked,
  kept outside the users database so a copy of the database alone cannot test
  guesses.

With ``secret_file`` set, every key is derived from that one shared secret
(HMAC-SHA256 with the purpose as message): every instance given the same file
signs and checks the same links and proofs, which several gateways behind one
load balancer need. Without it, each key is a private file in data_dir,
created on first use (``<purpose>.key``), shared by the workers of one host.

Synchronous (files): call through ``asyncio.to_thread`` from the loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from .errors import ConfigError
from .private import load_or_create_secret

PURPOSES = ("link-signing", "password-proof")
MIN_SECRET_BYTES = 32


def read_shared_secret(secret_file: str) -> bytes:
    try:
        raw = Path(secret_file).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"secret_file {secret_file}: {exc.strerror or exc}") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"secret_file {secret_file} holds {len(raw)} bytes; give at least {MIN_SECRET_BYTES} random ones "
            "(openssl rand -base64 48 > FILE)"
        )
    return raw


def server_key(data_dir: str | Path, secret_file: str, purpose: str) -> bytes:
    """The 32-byte key for ``purpose``."""
    if purpose not in PURPOSES:
        raise ValueError(purpose)
    if secret_file:
        secret = read_shared_secret(secret_file)
        return hmac.new(secret, f"s3gate-key-v1\n{purpose}".encode(), hashlib.sha256).digest()
    path = Path(data_dir) / f"{purpose}.key"
    raw = load_or_create_secret(path, lambda: secrets.token_bytes(32).hex().encode())
    try:
        key = bytes.fromhex(raw.decode().strip())
    except ValueError:
        key = b""
    if len(key) < 32:
        raise ConfigError(f"{path} is damaged; delete it to make a new one ({purpose} made with it stop working)")
    return key
