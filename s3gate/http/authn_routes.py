"""Browser login and the caller's own API: /login, /logout, /api/whoami, /api/tokens.

The login page is a plain HTML form (no script); a JSON body works too for
fetch() callers. A successful login sets the ``s3gate_session`` cookie:
HttpOnly, SameSite=Lax, Secure when the request came over HTTPS (directly or
through a trusted proxy), and a random id whose SHA-256 alone is stored, so
logout ends it at once.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode

from aiohttp import web

from .. import keys
from ..auth import audit, csrf
from ..auth.config import parse_duration
from ..auth.rules import Rule, RuleError, format_actions
from ..auth.service import InvalidCredentials, iso_time, token_json
from ..errors import BadRequest, Forbidden, PayloadTooLarge, TooManyRequests, Unauthorized
from . import assets
from .authn import COOKIE, principal, safe_next
from .forwarded import client_address, is_https, own_hosts
from .page import page_language, remember_language
from .responses import json_response

MAX_FORM = 16 * 1024


def _wants_json(request: web.Request) -> bool:
    return request.content_type == "application/json" or "application/json" in request.headers.get("Accept", "")


async def _read_body(request: web.Request) -> tuple[dict[str, str], bool]:
    """A small form or JSON object, read with a hard cap (never spooled). Returns (fields, was_json)."""
    if request.content_length is not None and request.content_length > MAX_FORM:
        raise PayloadTooLarge("form too large")
    data = bytearray()
    async for chunk in request.content.iter_chunked(4096):
        data += chunk
        if len(data) > MAX_FORM:
            raise PayloadTooLarge("form too large")
    if request.content_type == "application/json":
        try:
            body = json.loads(bytes(data) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("expected a JSON object")
        return body, True
    if request.content_type in ("application/x-www-form-urlencoded", ""):
        try:
            fields = parse_qs(bytes(data).decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise BadRequest("form is not valid UTF-8") from None
        return {k: v[0] for k, v in fields.items()}, False
    raise BadRequest("send application/x-www-form-urlencoded or application/json")


def _check_origin(request: web.Request) -> None:
    reason = csrf.refusal(request.method, request.headers, own_hosts(request))
    if reason:
        audit.record(
            "csrf_refused",
            remote=client_address(request),
            request_id=request.get(keys.REQUEST_ID),
            outcome="denied",
            reason=reason,
        )
        raise Forbidden(reason)


# -- the page (s3gate/ui/templates/login*.html, signed-in.html) ----------------------
def _login_form(lang: str, next_url: str, error: str = "", name: str = "", **values: str) -> str:
    text = assets.STRINGS[lang][error].format(**values) if error else ""
    err = assets.render("login-error.html", lang, error=text) if error else ""
    return err + assets.render("login-form.html", lang, next=next_url, name=name)


def _signed_in(lang: str, name: str, next_url: str) -> str:
    return assets.render("signed-in.html", lang, user=name, next=next_url)


def _page(
    request: web.Request, lang: str, body: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    other = "es" if lang == "en" else "en"
    text = assets.render(
        "login.html",
        lang,
        html_parts={"content": body},
        switch=f"/login?{urlencode({'next': safe_next(request.query.get('next')), 'lang': other})}",
        other_lang=other,
        other_lang_name=assets.STRINGS[other]["language_name"],
    )
    resp = web.Response(status=status, text=text, content_type="text/html", headers=headers)
    resp.headers["Vary"] = "Accept-Language, Cookie"
    remember_language(request, resp, lang)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"  # no clickjacking of the form
    resp.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    return resp


async def login_page(request: web.Request) -> web.Response:
    next_url = safe_next(request.query.get("next"))
    who = principal(request)
    lang = page_language(request)
    if who.authenticated:
        return _page(request, lang, _signed_in(lang, who.name or "", next_url))
    return _page(request, lang, _login_form(lang, next_url))


async def login(request: web.Request) -> web.Response:
    _check_origin(request)  # login CSRF: a foreign page must not sign you in as someone else
    fields, as_json = await _read_body(request)
    name = str(fields.get("username", "")).strip()
    password = str(fields.get("password", ""))
    next_url = safe_next(str(fields.get("next", "") or request.query.get("next", "")))
    service = request.app[keys.AUTH]
    remote = client_address(request)
    try:
        if not name or not password:
            raise InvalidCredentials("user name and password are required")
        who = await service.authenticate_password(name, password, remote, request_id=request.get(keys.REQUEST_ID))
    except InvalidCredentials as exc:
        if as_json:
            raise Unauthorized(exc.message) from None
        lang = page_language(request)
        return _page(request, lang, _login_form(lang, next_url, "invalid_login", name), status=401)
    except TooManyRequests as exc:
        if as_json:
            raise
        lang = page_language(request)
        wait = exc.headers.get("Retry-After", "60")
        form = _login_form(lang, next_url, "login_locked", name, seconds=wait)
        return _page(request, lang, form, status=429, headers=exc.headers)
    previous = request.cookies.get(COOKIE)
    if previous:
        await service.end_session(previous)  # one login, one session: no fixation, no orphans
    session_id, expires = await service.start_session(who, remote)
    audit.record(
        "login", user=who.name, via="session", remote=remote, request_id=request.get(keys.REQUEST_ID), outcome="ok"
    )
    if as_json:
        resp: web.Response = json_response({"user": who.name, "admin": who.admin, "expires": iso_time(expires)})
    else:
        resp = web.Response(status=303, headers={"Location": next_url})
    resp.set_cookie(
        COOKIE,
        session_id,
        max_age=service.config.session_ttl,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=is_https(request),
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def logout(request: web.Request) -> web.Response:
    _check_origin(request)
    service = request.app[keys.AUTH]
    who = principal(request)
    session_id = request.cookies.get(COOKIE, "")
    ended = await service.end_session(session_id) if session_id else False
    if ended:
        audit.record(
            "logout",
            user=who.name,
            via="session",
            remote=client_address(request),
            request_id=request.get(keys.REQUEST_ID),
            outcome="ok",
        )
    if _wants_json(request):
        resp: web.Response = json_response({"logged_out": ended})
    else:
        resp = web.Response(status=303, headers={"Location": "/login"})
    resp.del_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=is_https(request))
    return resp


# -- the caller's own API ----------------------------------------------------------
def _rule_json(r: Rule) -> dict:
    return {"bucket": r.bucket, "prefix": r.prefix, "actions": format_actions(r.actions)}


async def whoami(request: web.Request) -> web.Response:
    who = principal(request)
    return json_response(
        {
            "user": who.name,
            "via": who.via,
            "admin": who.admin,
            "rules": [_rule_json(r) for r in who.rules],
            "scopes": [[_rule_json(r) for r in s] for s in who.scopes],
        },
        headers={"Cache-Control": "no-store"},
    )


def _account(request: web.Request):
    """Tokens are managed by a signed-in person (session or password), never by a token or a link."""
    who = principal(request)
    if not who.authenticated:
        raise Unauthorized(headers={"WWW-Authenticate": 'Basic realm="s3gate"'})
    if who.via not in ("session", "password"):
        raise Forbidden("manage tokens with your password or a browser session, not with a token")
    return who


async def list_tokens(request: web.Request) -> web.Response:
    who = _account(request)
    service = request.app[keys.AUTH]
    everyone = who.admin and request.query.get("all") in ("1", "true", "yes")
    tokens = await service.list_tokens(None if everyone else who.name)
    now = service.clock()
    return json_response({"tokens": [token_json(t, now) for t in tokens]}, headers={"Cache-Control": "no-store"})


async def create_token(request: web.Request) -> web.Response:
    who = _account(request)
    service = request.app[keys.AUTH]
    if request.content_type != "application/json":
        raise BadRequest('send a JSON object: {"expires": "30d", "scope": ["BUCKET/PREFIX:read,list"], "label": "..."}')
    body, _ = await _read_body(request)
    owner = str(body.get("user") or who.name)
    if owner != who.name and not who.admin:
        raise Forbidden("only an admin may create tokens for another user")
    try:
        expires_in = parse_duration(body.get("expires"))
        scope = body.get("scope")
        rules = [Rule.parse(str(s)) for s in scope] if isinstance(scope, list) else None
    except (ValueError, RuleError) as exc:
        raise BadRequest(str(exc)) from None
    if scope is not None and not isinstance(scope, list):
        raise BadRequest("scope must be a list of 'BUCKET[/PREFIX]:ACTIONS' strings")
    secret, token = await service.create_token(
        owner, expires_in=expires_in, scope=rules, label=str(body.get("label") or "")
    )
    audit.record(
        "token_created",
        user=who.name,
        via=who.via,
        token=token.id,
        target=owner,
        detail=",".join(str(r) for r in token.scope) if token.scope else "full rights",
        remote=client_address(request),
        request_id=request.get(keys.REQUEST_ID),
        outcome="ok",
    )
    body = token_json(token, service.clock())
    body["token"] = secret  # shown this once; only its hash is kept
    return json_response(body, status=201, headers={"Cache-Control": "no-store"})


async def revoke_token(request: web.Request) -> web.Response:
    who = _account(request)
    service = request.app[keys.AUTH]
    token = await service.revoke_token(request.match_info["token_id"], owner_id=None if who.admin else who.user_id)
    audit.record(
        "token_revoked",
        user=who.name,
        via=who.via,
        token=token.id,
        target=token.owner,
        remote=client_address(request),
        request_id=request.get(keys.REQUEST_ID),
        outcome="ok",
    )
    return json_response({"revoked": token.id})
