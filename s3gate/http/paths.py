"""URL-facing paths: listing prefixes, form filenames placed under a prefix, an object's URL.

S3's own naming rules (``check_bucket``, ``check_key``) live in ``s3gate.storage.names``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ..errors import InvalidKey
from ..storage.names import check_key


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
