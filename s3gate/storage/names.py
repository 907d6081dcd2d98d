"""S3's naming rules for buckets and object keys, checked before anything reaches S3.

The storage room's facts: the gateway's URLs (``s3gate.http.paths``) and the
embedded store's start-up check both apply them.
"""

from __future__ import annotations

import ipaddress
import re

from ..errors import InvalidBucketName, InvalidKey

MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DOTTED_QUAD = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$")


def check_bucket(name: str) -> str:
    """S3's bucket naming rules (the ones any store enforces)."""
    if not _BUCKET.match(name):
        raise InvalidBucketName(
            f"invalid bucket name {name!r}: 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        raise InvalidBucketName(f"invalid bucket name {name!r}: no adjacent '.' / '-' around dots")
    # Only four dotted numbers can be an address: the common name never pays for
    # IPv4Address's exception path (it showed in the profile of every request).
    if _DOTTED_QUAD.match(name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return name
        raise InvalidBucketName(f"invalid bucket name {name!r}: must not look like an IP address")
    return name


def check_key(key: str, *, allow_folder: bool = False) -> str:
    if not key:
        raise InvalidKey("missing object key: add a file name to the URL")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("object key is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is {size} bytes; S3 allows at most {MAX_KEY_BYTES}")
    if any(ord(c) < 0x20 or c == "\x7f" for c in key):
        raise InvalidKey("object key contains control characters")
    segments = key.split("/")
    if any(s in (".", "..") for s in segments):
        raise InvalidKey("object key may not contain '.' or '..' segments")
    if key.endswith("/") and not allow_folder:
        raise InvalidKey("object key ends with '/': add a file name to the URL")
    return key
