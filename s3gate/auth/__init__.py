"""The auth room: users, passwords, API tokens, sessions, permission rules, throttling, audit.

Never imports ``s3gate.storage``; knows nothing of aiohttp except in
``csrf`` (header checks only). The HTTP side lives in ``s3gate.http.authn``
(the middleware and the policy behind ``s3gate.http.access``) and
``s3gate.http.authn_routes`` (/login, /api); ``s3gate.app`` installs them.
"""

from __future__ import annotations

from .bootstrap import ensure_admin, ensure_admin_async
from .config import open_warning

__all__ = ["ensure_admin", "ensure_admin_async", "open_warning"]
