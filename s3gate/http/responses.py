"""JSON answers that end in a newline, so curl's output leaves the prompt alone."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)
