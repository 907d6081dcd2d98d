"""Gateway-signed download links: /files/BUCKET/KEY?expires=T&by=USER&sig=HMAC.

Used where clients cannot reach S3 itself (the embedded store on loopback):
anyone holding the link may fetch that one object until it expires. The key
comes from ``s3gate.keyring`` (a private file in data_dir, or derived from the
shared ``secret_file``), so links survive restarts and are valid on every
worker and, with a shared secret, on every instance.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlencode

from aiohttp import web

from .. import keys
from ..errors import Forbidden
from .paths import object_path


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class LinkSigner:
    def __init__(self, secret: bytes):
        if len(secret) < 32:
            raise ValueError("link-signing key must be at least 32 bytes")
        self._secret = secret

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
    """Whether a request carries a gateway-signed link (its credentials are then the link's signer)."""
    return "sig" in query and "expires" in query


def verify_request(request: web.Request, bucket: str, key: str) -> str:
    """The one check of a request's signed link against exactly the object about to be served.

    Returns the signer's name ('' if anonymous); 403 if the link is tampered
    with, expired or names another object, so a signed query string pasted
    onto another URL grants nothing. Verified once per request: the download
    handler and the auth policy both ask.
    """
    done = request.get(keys.LINK)
    if done is None:
        signer_tool = request.app.get(keys.LINKS)
        if signer_tool is None:
            raise Forbidden("this gateway does not hand out download links")
        done = (bucket, key), signer_tool.verify(bucket, key, dict(request.query))
        request[keys.LINK] = done
    if done[0] != (bucket, key):
        raise Forbidden("a download link only allows downloading its object")
    return done[1]
