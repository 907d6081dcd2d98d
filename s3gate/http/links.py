"""Gateway-signed download links: /files/BUCKET/KEY?expires=T&by=USER&sig=HMAC.

Used where clients cannot reach S3 itself (the embedded store on loopback):
anyone holding the link may fetch that one object until it expires. The key
lives in the data directory (mode 0600) so links survive restarts and are
valid on every worker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

from ..errors import ConfigError, Forbidden
from .paths import object_path


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class LinkSigner:
    def __init__(self, secret: bytes):
        if len(secret) < 32:
            raise ValueError("link-signing key must be at least 32 bytes")
        self._secret = secret

    @classmethod
    def load_or_create(cls, path: Path) -> LinkSigner:
        """Read the key, or create it. Safe when several workers start at once:
        the key is written to a private temporary file and linked into place,
        so nobody ever reads a half-written key."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                text = path.read_text().strip()
            except FileNotFoundError:
                pass
            else:
                try:
                    return cls(bytes.fromhex(text))
                except ValueError:
                    raise ConfigError(
                        f"link-signing key {path} is damaged; delete it to make a new one "
                        "(links handed out so far stop working)"
                    ) from None
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
        raise ConfigError(f"could not create the link-signing key {path}")

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for another purpose (listing cursors), independent of the link MACs."""
        return hmac.new(self._secret, f"s3gate-derive-v1\n{purpose}".encode(), hashlib.sha256).digest()

    def _mac(self, bucket: str, key: str, expires: int, by: str) -> str:
        msg = "\n".join(("s3gate-link-v1", bucket, key, str(expires), by)).encode()
        return _b64(hmac.new(self._secret, msg, hashlib.sha256).digest())

    def sign(self, bucket: str, key: str, *, lifetime: int, by: str = "", now: float | None = None) -> dict[str, str]:
        expires = int((now or time.time()) + lifetime)
        query = {"expires": str(expires)}
        if by:
            query["by"] = by
        query["sig"] = self._mac(bucket, key, expires, by)
        return query

    def url(self, base: str, bucket: str, key: str, *, lifetime: int, by: str = "") -> str:
        query = self.sign(bucket, key, lifetime=lifetime, by=by)
        return f"{base}{object_path(bucket, key)}?{urlencode(query)}"

    def verify(self, bucket: str, key: str, query: dict[str, str], *, now: float | None = None) -> str:
        """Return the signer's name ('' if anonymous); raise 403 if tampered or expired."""
        try:
            expires = int(query["expires"])
            sig = query["sig"]
        except (KeyError, ValueError):
            raise Forbidden("invalid download link") from None
        by = query.get("by", "")
        if not hmac.compare_digest(sig, self._mac(bucket, key, expires, by)):
            raise Forbidden("invalid download link (signature does not match)")
        if (now or time.time()) > expires:
            raise Forbidden("download link expired")
        return by


def is_signed(query) -> bool:
    return "sig" in query and "expires" in query
