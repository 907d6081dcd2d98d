"""The web page's files: static assets under content-hashed names, templates, and its two languages.

Everything is read once, at import (as the listing templates are): a request
never reads a file on the event loop. A static file is served as
``/static/NAME.HASH.EXT``, the hash being the first 12 hex digits of its
SHA-256, so it can be cached for a year (``immutable``, RFC 8246): a changed
file gets a new name, and the page, which is never cached, names the new one.
"""

from __future__ import annotations

import hashlib
import html
import importlib.resources
import json
import string
from dataclasses import dataclass

from .negotiation import weighted

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    name: str  # as served: app.1a2b3c4d5e6f.js
    body: bytes
    content_type: str
    etag: str


def _load_static() -> tuple[dict[str, Asset], dict[str, str]]:
    """(assets by served name, served URL by source name)."""
    root = importlib.resources.files("s3gate.ui") / "static"
    served: dict[str, Asset] = {}
    urls: dict[str, str] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        stem, dot, ext = entry.name.rpartition(".")
        if not dot or f".{ext}" not in _TYPES:
            continue
        body = entry.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:12]
        name = f"{stem}.{digest}.{ext}"
        served[name] = Asset(name, body, _TYPES[f".{ext}"], f'"{digest}"')
        urls[entry.name] = f"/static/{name}"
    return served, urls


def _load_strings() -> dict[str, dict[str, str]]:
    root = importlib.resources.files("s3gate.ui") / "i18n"
    out = {lang: json.loads((root / f"{lang}.json").read_text("utf-8")) for lang in LANGUAGES}
    missing = {lang: sorted(out[DEFAULT_LANGUAGE].keys() - table.keys()) for lang, table in out.items()}
    if any(missing.values()):
        raise RuntimeError(f"untranslated page strings: {missing}")
    return out


def _load_template(name: str) -> string.Template:
    return string.Template((importlib.resources.files("s3gate.ui") / "templates" / name).read_text("utf-8"))


STATIC, URLS = _load_static()
STRINGS = _load_strings()
_TEMPLATES = {
    name: _load_template(name)
    for name in ("app.html", "login.html", "login-form.html", "login-error.html", "signed-in.html")
}


def language(accept_language: str, chosen: str | None = None) -> str:
    """The page's language: an explicit choice (the switch), else Accept-Language (RFC 9110 §12.5.4)."""
    if chosen in LANGUAGES:
        return chosen
    best, best_q = DEFAULT_LANGUAGE, 0.0
    for tag, q in weighted(accept_language):
        primary = tag.split("-", 1)[0]
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


def script_json(value: object) -> str:
    """JSON for a ``<script type="application/json">`` data block.

    Such a block is not executed (the CSP's ``script-src 'self'`` is
    untouched) and not entity-decoded either, so it is not HTML-escaped:
    ``<`` and ``&`` become JSON escapes instead, and no value can close the
    element.
    """
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace("&", "\\u0026")


def render(
    template: str,
    lang: str = DEFAULT_LANGUAGE,
    *,
    data: dict[str, object] | None = None,
    html_parts: dict[str, str] | None = None,
    **values: str,
) -> str:
    """A page in one language. ``$t_NAME`` is string NAME; every value is HTML-escaped here.

    ``data`` values go in as ``$NAME_json`` data blocks (script_json); the
    page's script gets its strings as ``$strings_json``. ``html_parts`` are
    pieces already rendered by this function (a fragment inside a frame).
    """
    table = STRINGS[lang]
    fields = {f"t_{k}": html.escape(v) for k, v in table.items()}
    fields.update({k: html.escape(v) for k, v in values.items()})
    fields.update({f"asset_{k.replace('.', '_').replace('-', '_')}": v for k, v in URLS.items()})
    fields["lang"] = lang
    fields["strings_json"] = script_json(table)
    fields.update({f"{k}_json": script_json(v) for k, v in (data or {}).items()})
    fields.update(html_parts or {})
    return _TEMPLATES[template].substitute(fields)
