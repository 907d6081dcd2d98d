"""Listing cursors: opaque, sealed, and bound to the listing and the caller.

A cursor carries S3's continuation token, which names a key (SeaweedFS's is
the last key listed). Handed out in the clear it would show a caller with
rights to ``docs/`` the keys of ``docs-private/``. So the token is sealed with
AES-GCM under a key derived from the gateway's secret, padded so its length
says little, and the bucket, prefix, mode and caller are the associated data:
a cursor opens only for the listing, and the caller, it was made for.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import BadRequest

_VERSION = b"\x01"
_NONCE = 12
_PAD = 128  # plaintexts are padded to a multiple of this many bytes


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorBox:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("cursor key must be 32 bytes")
        self._aead = AESGCM(key)

    @staticmethod
    def _context(bucket: str, prefix: str, recursive: bool, caller: str) -> bytes:
        fields = ("s3gate-cursor-v1", bucket, prefix, "r" if recursive else "d", caller)
        return "\0".join(fields).encode()

    def seal(self, token: str, *, bucket: str, prefix: str, recursive: bool, caller: str) -> str:
        raw = token.encode()
        padded = len(raw).to_bytes(2, "big") + raw
        padded += b"\0" * (-len(padded) % _PAD)
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, padded, self._context(bucket, prefix, recursive, caller))
        return _b64(_VERSION + nonce + sealed)

    def open(self, cursor: str, *, bucket: str, prefix: str, recursive: bool, caller: str) -> str:
        """The continuation token, or 400 for a cursor that is not one of ours for this listing and caller."""
        try:
            raw = _unb64(cursor)
        except (binascii.Error, ValueError):
            raise BadRequest("invalid cursor") from None
        if len(raw) < 1 + _NONCE + 16 or raw[:1] != _VERSION:
            raise BadRequest("invalid cursor")
        nonce, sealed = raw[1 : 1 + _NONCE], raw[1 + _NONCE :]
        try:
            padded = self._aead.decrypt(nonce, sealed, self._context(bucket, prefix, recursive, caller))
        except InvalidTag:
            raise BadRequest("invalid cursor (made for another listing or caller, or altered)") from None
        size = int.from_bytes(padded[:2], "big")
        try:
            return padded[2 : 2 + size].decode()
        except UnicodeDecodeError:
            raise BadRequest("invalid cursor") from None
