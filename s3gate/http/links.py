"""Gateway-signed download links: /files/BUCKET/KEY?expires=T&by=USER&sig=HMAC.

Used where clients cannot reach S3 itself (the embedded store on loopback):
anyone holding the link may fetch that one object until it expires. A folder
archive link (/files/BUCKET/PREFIX/?archive=FMT&expires=...) fetches that
folder's archive in that format, and nothing else: its signature covers the
format under a tag of its own, so it names neither an object, nor another
folder, nor another format. Either kind reads with its signer's rights at the
time of use (checked by the auth policy), so a link dies with them. The key
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

    def _mac(self, bucket: str, key: str, expires: int, by: str, archive: str = "") -> str:
        # Archive links sign under their own first field: no object link's
        # message can equal an archive link's, whatever the fields hold.
        fields = ("s3gate-archive-v1", bucket, key, archive) if archive else ("s3gate-link-v1", bucket, key)
        msg = "\n".join((*fields, str(expires), by)).encode()
        return _b64(hmac.new(self._secret, msg, hashlib.sha256).digest())

    def sign(
        self, bucket: str, key: str, *, lifetime: int, by: str = "", archive: str = "", now: float | None = None
    ) -> dict[str, str]:
        """The query of a link to bucket/key, or with ``archive`` to the archive of folder ``key`` in that format."""
        expires = int((now or time.time()) + lifetime)
        query = {"archive": archive} if archive else {}
        query["expires"] = str(expires)
        if by:
            query["by"] = by
        query["sig"] = self._mac(bucket, key, expires, by, archive)
        return query

    def url(self, base: str, bucket: str, key: str, *, lifetime: int, by: str = "", archive: str = "") -> str:
        query = self.sign(bucket, key, lifetime=lifetime, by=by, archive=archive)
        return f"{base}{object_path(bucket, key)}?{urlencode(query)}"

    def verify(
        self, bucket: str, key: str, query: dict[str, str], *, archive: str = "", now: float | None = None
    ) -> str:
        """Return the signer's name ('' if anonymous); raise 403 if tampered or expired."""
        try:
            expires = int(query["expires"])
            sig = query["sig"]
        except (KeyError, ValueError):
            raise Forbidden("invalid download link") from None
        by = query.get("by", "")
        if not hmac.compare_digest(sig, self._mac(bucket, key, expires, by, archive)):
            raise Forbidden("invalid download link (signature does not match)")
        if (now or time.time()) > expires:
            raise Forbidden("download link expired")
        return by


def is_signed(query) -> bool:
    """Whether a request carries a gateway-signed link (its credentials are then the link's signer)."""
    return "sig" in query and "expires" in query


def is_archive(query) -> bool:
    """Whether a signed link claims to be a folder archive link (``verify_request`` decides if it is)."""
    return is_signed(query) and "archive" in query


def verify_request(request: web.Request, bucket: str, key: str, archive: str = "") -> str:
    """The one check of a request's signed link against exactly what is about to be served:
    the object bucket/key, or with ``archive`` the archive of folder ``key`` in that format.

    Returns the signer's name ('' if anonymous); 403 if the link is tampered
    with, expired or names something else, so a signed query string pasted
    onto another URL grants nothing. Verified once per request: the handler
    and the auth policy both ask.
    """
    done = request.get(keys.LINK)
    if done is None:
        signer_tool = request.app.get(keys.LINKS)
        if signer_tool is None:
            raise Forbidden("this gateway does not hand out download links")
        done = (bucket, key, archive), signer_tool.verify(bucket, key, dict(request.query), archive=archive)
        request[keys.LINK] = done
    if done[0] != (bucket, key, archive):
        raise Forbidden("a download link only allows downloading its object")
    return done[1]


def covers(request: web.Request, action: str, bucket: str, key: str) -> bool:
    """For filtering (listing, archive members): whether the request's verified folder
    archive link reaches bucket/key. An object link never opens a listing."""
    done = request.get(keys.LINK)
    if done is None or not done[0][2]:
        return False
    (linked_bucket, prefix, _), _by = done
    return action in ("list", "read") and bucket == linked_bucket and key.startswith(prefix)


def require_allows(request: web.Request, action: str, bucket: str, key: str) -> str:
    """The signer of the request's link if it allows action on bucket/key, else 403.

    An object link reads its object. A folder archive link, once the archive
    handler has verified it, lists its folder and reads what is under it: the
    archive is made of exactly those steps. Nothing else, whatever the handler.
    """
    done = request.get(keys.LINK)
    if done is not None and done[0][2]:
        if not covers(request, action, bucket, key):
            raise Forbidden("a folder archive link only allows downloading that archive")
        return done[1]
    if action != "read":
        raise Forbidden("a download link only allows downloading its object")
    return verify_request(request, bucket, key)
