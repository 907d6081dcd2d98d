"""Bucket names, object keys and form filenames: checked before anything reaches S3."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote

from ..errors import InvalidBucketName, InvalidKey

MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket(name: str) -> str:
    """S3's bucket naming rules (the ones any store enforces)."""
    if not _BUCKET.match(name):
        raise InvalidBucketName(
            f"invalid bucket name {name!r}: 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        raise InvalidBucketName(f"invalid bucket name {name!r}: no adjacent '.' / '-' around dots")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name
    raise InvalidBucketName(f"invalid bucket name {name!r}: must not look like an IP address")


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


def check_prefix(prefix: str) -> str:
    """A listing or upload prefix: '' or a folder path ending in '/'."""
    if not prefix:
        return ""
    if not prefix.endswith("/"):
        prefix += "/"
    return check_key(prefix, allow_folder=True)


def safe_join(prefix: str, filename: str) -> str:
    """Place a client-supplied (possibly relative) filename under prefix.

    Browsers and curl send names like 'dir/sub/a.txt' (folder uploads) or, from
    Windows, 'dir\\sub\\a.txt'. The relative path is kept; '.', '..', empty
    segments and any leading '/' or drive letter are dropped, so the result can
    never leave ``prefix``.
    """
    name = filename.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".", "..")]
    if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):
        parts = parts[1:]
    if not parts:
        raise InvalidKey(f"unusable file name {filename!r}")
    return check_key(check_prefix(prefix) + "/".join(parts))


def object_path(bucket: str, key: str) -> str:
    """The object's URL path, percent-encoded (RFC 3986 §2.1): '?', '#' and '%' in a key stay in the key."""
    return f"/files/{quote(bucket, safe='')}/{quote(key, safe='/')}"
