"""Every typed app and request key, in one place (aiohttp's web.AppKey / RequestKey)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:  # imported for typing only: keys.py must not pull in the rooms
    pass

SETTINGS = web.AppKey("settings", "Settings")
STORAGE = web.AppKey("storage", "Storage")
BUDGET = web.AppKey("budget", "MemoryBudget")
LINKS = web.AppKey("links", "LinkSigner")
CURSORS = web.AppKey("cursors", "CursorBox")  # seals listing cursors; key derived from the link key
UPLOADS = web.AppKey("uploads", "UploadRegistry")
JOURNAL = web.AppKey("journal", "UploadJournal")
# The store resumable upload sessions live in: the users store, or one opened for them alone with auth off.
UPLOAD_SESSIONS = web.AppKey("upload_sessions", "Store")
# Installed by the auth room; absent when auth is switched off (see http/access.py).
POLICY = web.AppKey("policy", object)

REQUEST_ID = web.RequestKey("request_id", str)
ERROR_STYLE = web.RequestKey("error_style", str)  # "text" | "json" | "html"

# -- auth room (s3gate/auth, s3gate/http/authn.py)
if TYPE_CHECKING:
    pass

AUTH = web.AppKey("auth", "AuthService")  # users store + credential checks; opened in cleanup_ctx
AUTH_CONFIG = web.AppKey("auth_config", "AuthConfig")
PRINCIPAL = web.RequestKey("principal", "Principal")  # who is calling (set by the authn middleware)
ACCESS_CHECKS = web.RequestKey("access_checks", list)  # (action, bucket, key, allowed) for the audit log
LINK = web.RequestKey("link", tuple)  # ((bucket, key, archive format or ''), signer) of the signed link verified
