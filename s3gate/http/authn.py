"""Who is calling: the authentication middleware, CSRF check, and the policy behind ``access``.

Every request gets a ``Principal`` in ``request[keys.PRINCIPAL]``, from the
first of:

1. ``Authorization: Basic`` — user name and password (curl ``-u``, wget
   ``--user``), or user name and an ``s3g_`` token as the password;
2. ``Authorization: Bearer s3g_...`` — an API token;
3. the ``s3gate_session`` cookie — a browser session from ``/login``;
4. a gateway-signed link (``?expires=&by=&sig=``) — the signer, read-only,
   and only for the object the signature names (checked in ``require``);
5. nobody — anonymous, with only the rules opened to everyone.

Bad credentials are a 401 at once (with ``WWW-Authenticate``); missing ones
are only refused when a handler asks ``access.require`` for something the
caller may not do. The middleware sits inside the error middleware, so its
errors are rendered like every other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

from aiohttp import web

from .. import keys
from ..auth import audit, credentials, csrf
from ..auth.config import AuthConfig, check, open_warning
from ..auth.rules import Rule
from ..auth.service import ANONYMOUS_PRINCIPAL, AuthService, InvalidToken, Principal, running_service
from ..errors import Forbidden, GatewayError, Unauthorized
from . import links
from .forwarded import client_address, own_hosts

log = logging.getLogger("s3gate.auth")

COOKIE = "s3gate_session"
REALM = "s3gate"
BASIC_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
BEARER_CHALLENGE = {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'}
READ_ONLY = (Rule("*", "", frozenset({"read"})),)
# A folder archive link lists its folder and reads what is in it (and only there: links.require_allows).
READ_AND_LIST = (Rule("*", "", frozenset({"read", "list"})),)
_EVENTS = {"read": "download", "list": "list", "write": "upload", "delete": "delete", "csrf": "csrf_refused"}


# -- request facts ------------------------------------------------------------
def wants_login_page(request: web.Request) -> bool:
    """A browser navigating to a page (not curl/wget, not fetch()): send it to /login rather than a 401."""
    if request.method not in ("GET", "HEAD") or "Authorization" in request.headers:
        return False
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in request.headers.get("Accept", "")


def login_url(request: web.Request) -> str:
    return "/login?next=" + quote(request.rel_url.path_qs, safe="")


def principal(request: web.Request) -> Principal:
    return request.get(keys.PRINCIPAL) or ANONYMOUS_PRINCIPAL


# -- the policy behind s3gate.http.access --------------------------------------
class Policy:
    """Installed as ``app[keys.POLICY]``; ``s3gate.http.access`` delegates to it."""

    async def require(self, request: web.Request, action: str, bucket: str, key: str = "") -> None:
        who = principal(request)
        if who.via == "link":
            self._check_link(request, action, bucket, key)
        ok = who.may(action, bucket, key)
        checks = request.get(keys.ACCESS_CHECKS)
        if checks is not None:
            checks.append((action, bucket, key, ok))
        if ok:
            return
        if who.via == "link":
            raise Forbidden("the signer of this link may no longer read this object")
        if not who.authenticated:
            if wants_login_page(request):
                raise web.HTTPSeeOther(login_url(request))
            raise Unauthorized(headers=BASIC_CHALLENGE)
        where = f"{bucket}/{key}" if key else bucket
        if who.via == "token" and who.owner_may(action, bucket, key):
            raise Forbidden(f"this token's scope does not allow {action} on {where} (its owner {who.name} may)")
        raise Forbidden(f"{who.name} may not {action} {where}")

    def allowed(self, request: web.Request, action: str, bucket: str, key: str = "") -> bool:
        who = principal(request)
        if who.via == "link" and not links.covers(request, action, bucket, key):
            return False  # a link opens one object or one folder's archive, never a listing
        return who.may(action, bucket, key)

    def principal_name(self, request: web.Request) -> str | None:
        return principal(request).name

    def via_link(self, request: web.Request) -> bool:
        return principal(request).via == "link"

    @staticmethod
    def _check_link(request: web.Request, action: str, bucket: str, key: str) -> None:
        # Whatever the handler: a link reads exactly the object (or folder archive) it names.
        if links.require_allows(request, action, bucket, key) != (principal(request).name or ""):
            raise Forbidden("invalid download link")  # its signer is gone


# -- authentication --------------------------------------------------------------
def _basic(value: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthorized("malformed Basic credentials", headers=BASIC_CHALLENGE) from None
    try:
        text = raw.decode("utf-8")  # RFC 7617 §2.1: UTF-8 is what clients send today
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    name, sep, password = text.partition(":")
    if not sep:
        raise Unauthorized("malformed Basic credentials", headers=BASIC_CHALLENGE)
    return name, password


async def authenticate(request: web.Request, service: AuthService, remote: str | None) -> tuple[Principal, bool]:
    """Return (principal, ambient): ambient credentials are the ones a browser sends on its own."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            name, password = _basic(value)
            try:
                if credentials.is_token(password):
                    return await service.authenticate_token(password, name=name), True
                rid = request.get(keys.REQUEST_ID)
                return await service.authenticate_password(name, password, remote, request_id=rid), True
            except Unauthorized as exc:
                if isinstance(exc, InvalidToken):
                    audit.record(
                        "token_refused", remote=remote, outcome="failed", request_id=request.get(keys.REQUEST_ID)
                    )
                raise Unauthorized(exc.message, headers=BASIC_CHALLENGE) from None
        if scheme == "bearer":
            token = value.strip()
            if not credentials.is_token(token):
                raise Unauthorized("not an s3gate token (they start with s3g_)", headers=BEARER_CHALLENGE)
            try:
                return await service.authenticate_token(token), False
            except Unauthorized as exc:
                audit.record("token_refused", remote=remote, outcome="failed", request_id=request.get(keys.REQUEST_ID))
                raise Unauthorized(exc.message, headers=BEARER_CHALLENGE) from None
        raise Unauthorized("unsupported Authorization scheme: use Basic or Bearer", headers=BASIC_CHALLENGE)
    session_id = request.cookies.get(COOKIE)
    if session_id:
        found = await service.session_principal(session_id)
        if found is not None:
            return found, True
    if links.is_signed(request.query) and _serves_links(request):
        signer = await service.signer_principal(request.query.get("by", ""))
        return signer.narrowed(READ_AND_LIST if links.is_archive(request.query) else READ_ONLY, via="link"), False
    return await service.anonymous(), False


def _serves_links(request: web.Request) -> bool:
    """Only a URL of something in a bucket may carry a link's credentials.

    The link principal stands for its signer before the signature is checked
    against the object: the policy checks it at every access, and every route
    with a bucket in its path asks the policy (a link then reads its object,
    nothing else: 403). Anywhere else (/api/whoami, /api/rights, /api/uploads,
    /metrics...) no such check runs: there a forged ``?by=admin&sig=x`` would
    be the admin. There the query is ignored.
    """
    return "bucket" in request.match_info


def _status(exc: BaseException) -> int:
    if isinstance(exc, GatewayError):
        return exc.status
    if isinstance(exc, web.HTTPException):
        return exc.status
    if isinstance(exc, (asyncio.CancelledError, ConnectionResetError)):
        return 499  # client went away (nginx's convention)
    return 500


def _audit_access(request: web.Request, who: Principal, remote: str | None, status: int) -> None:
    rid = request.get(keys.REQUEST_ID)
    for action, bucket, key, ok in request.get(keys.ACCESS_CHECKS) or ():
        audit.record(
            _EVENTS.get(action, action),
            user=who.name,
            via=who.via,
            token=who.token_id,
            action=action,
            bucket=bucket,
            key=key,
            remote=remote,
            request_id=rid,
            outcome="denied" if not ok else ("ok" if status < 400 else "error"),
            status=status,
        )


@web.middleware
async def authn_middleware(request: web.Request, handler):
    service = request.app[keys.AUTH]
    remote = client_address(request)
    who, ambient = await authenticate(request, service, remote)
    request[keys.PRINCIPAL] = who
    request[keys.ACCESS_CHECKS] = []
    if ambient:
        reason = csrf.refusal(request.method, request.headers, own_hosts(request))
        if reason:
            audit.record(
                "csrf_refused",
                user=who.name,
                via=who.via,
                remote=remote,
                request_id=request.get(keys.REQUEST_ID),
                outcome="denied",
                reason=reason,
            )
            raise Forbidden(reason)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except BaseException as exc:
        status = _status(exc)
        raise
    finally:
        _audit_access(request, who, remote, status)


# -- wiring (app.py installs these; see create_app) -------------------------------
def checked_config(settings) -> AuthConfig | None:
    """The auth settings, checked (ConfigError on a bad value); None when auth is off.

    With ``auth`` off nothing is installed: this only warns (loudly, when
    listening beyond loopback).
    """
    config = check(settings)
    if config.enabled:
        return config
    warning = open_warning(settings)
    if warning:
        log.critical("!" * 72)
        log.critical(warning)
        log.critical("!" * 72)
    else:
        log.warning("authentication is off (S3GATE_AUTH=0): anyone on this machine can use the gateway")
    return None


def auth_ctx(config: AuthConfig, *, hasher=None, clock=None):
    """The cleanup_ctx that opens the audit log and the users store into ``app[keys.AUTH]``.

    ``hasher``/``clock`` are for tests (cheap argon2 parameters, fake time).
    """

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with running_service(config, hasher=hasher, clock=clock) as service:
            await service.passwords.dummy_hash()  # now, so the first unknown user is not faster
            if not await service.store.count_users():
                log.warning("no users yet: create one with `s3gate users add NAME --admin` (or start with ./run.sh)")
            app[keys.AUTH] = service
            yield

    return ctx


async def private_when_authenticated(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: a response made for one user is never served by a shared cache to another."""
    # RFC 9111 §5.2.2.7; cookie-authenticated responses are not protected by
    # the Authorization rule of §3.5.
    who = request.get(keys.PRINCIPAL)
    if who is not None and who.authenticated and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "private"


def safe_next(target: str | None) -> str:
    """Only same-site paths: '/x?y' yes; '//evil', 'http://evil', '/\\evil', control characters no.

    What comes back goes into a Location header: one line, ASCII only
    (anything else percent-encoded, RFC 3986 §2.1).
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return quote(target, safe="/?&=%#:@!$'()*+,;~-._")
