"""Resumable uploads of any size: upload sessions on top of S3 multipart, for the page and for curl.

POST   /api/uploads                 create: {"bucket", "key", "size", "name", "mtime"} (and optionally
                                    "part_size", "content_type"); 201 with the id, a grant, the part
                                    size the gateway chose, the number of parts and the expiry
GET    /api/uploads                 the caller's unfinished sessions (to resume after a reload)
GET    /api/uploads/{id}            one session: the parts S3 holds (number, size, MD5) and the missing ones
PUT    /api/uploads/{id}/parts/{n}  part n, exactly its length; sending it again replaces it
POST   /api/uploads/{id}/complete   the object appears (If-None-Match: * = only if the key is new)
DELETE /api/uploads/{id}            abort: the parts are deleted

Which parts are done is always S3's answer (ListParts), never the database's,
so a part whose request broke is simply missing and sent again. Each part
request streams into one part-sized buffer reserved from the upload memory
budget, is checked against the Content-MD5 / x-amz-checksum-sha256 the client
sent (if any), and goes to UploadPart with its Content-MD5, which S3 verifies.

Who may touch a session: its owner (or an admin) with the usual credentials
(cookie, Basic, Bearer), or anyone presenting the session's grant in
``X-Upload-Grant``. Everybody else gets 404, the same answer as for a session
that does not exist. The grant is the "session-scoped grant": an HMAC of the
session id (the id is a handle that appears in URLs and logs, the grant is
not), handed to the owner at creation and in ``GET /api/uploads``. It stands
in for the owner's login for this one session only — its parts, status,
completion and abort — so an upload outlives a login cookie (or a Bearer
token) that expires midway. It is checked on every request against the
owner as they are now: the account must exist and be enabled, and its rules
must still allow ``write`` on the key; it ends with the session
(``upload_session_hours`` after creation).

With authentication off there are no users: sessions are anonymous and kept
in the users database all the same (opened for them alone), so a reload or a
restart can still resume; as with everything else then, anyone who can reach
the gateway may continue or abort them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .. import keys, metrics
from ..auth import audit
from ..auth.service import Principal
from ..auth.sql import open_store
from ..auth.store import Store, UploadSession
from ..errors import (
    BadRequest,
    ChecksumMismatch,
    ClientGone,
    Conflict,
    Forbidden,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    ShuttingDown,
    Unauthorized,
)
from ..settings import S3_MAX_PARTS, S3_MIN_PART, MiB
from ..storage import multipart
from ..storage.names import check_bucket, check_key
from ..storage.s3 import UPLOADER_TAG
from . import access, authn, files, uploads
from .paths import object_path
from .responses import json_response

log = logging.getLogger("s3gate.upload")

# Each part is one request: at most this, so it passes the body limits of
# common proxies and CDNs (often ~100 MB), and at least S3's minimum.
MAX_PART = 64 * MiB
MIN_PART = S3_MIN_PART
GRANT_HEADER = "X-Upload-Grant"
GRANT_PREFIX = "s3gu_"
MAX_CREATE_BODY = 8192
MAX_NAME = 1024
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_PART_NUMBER = re.compile(r"[1-9][0-9]{0,4}")
_NO_CACHE = {"Cache-Control": "no-store"}


class NoSuchSession(NotFound):
    code, default_message = "no_such_upload", "no such upload session (finished, aborted, expired, or not yours)"


# -- the session's numbers -----------------------------------------------------------------
def choose_part_size(size: int, floor: int, budget: int, asked: int | None = None) -> int:
    """The part size for a session of ``size`` bytes: ``asked`` if usable, else the smallest
    whole MiB from ``floor`` (the part_size setting) that needs at most 10,000 parts."""
    ceiling = min(MAX_PART, budget)
    if asked is not None:
        if not MIN_PART <= asked <= ceiling:
            raise BadRequest(f"part_size must be between {MIN_PART} and {ceiling} bytes")
        if math.ceil(size / asked) > S3_MAX_PARTS:
            raise BadRequest(
                f"part_size {asked} makes {math.ceil(size / asked)} parts; S3 allows at most {S3_MAX_PARTS}"
            )
        return asked
    need = max(min(max(floor, MIN_PART), MAX_PART), math.ceil(size / S3_MAX_PARTS))
    part = math.ceil(need / MiB) * MiB
    if part > ceiling:
        raise PayloadTooLarge(
            f"a resumable upload holds at most {S3_MAX_PARTS} parts of {ceiling} bytes ({S3_MAX_PARTS * ceiling} bytes)"
        )
    return part


def part_count(s: UploadSession) -> int:
    return max(1, math.ceil(s.size / s.part_size))


def part_length(s: UploadSession, number: int) -> int:
    """Every part is part_size long but the last, which holds the rest."""
    if number < part_count(s):
        return s.part_size
    return s.size - s.part_size * (part_count(s) - 1)


def grant_for(request: web.Request, session_id: str) -> str:
    key = request.app[keys.LINKS].derive("upload-session-grants")
    mac = hmac.new(key, session_id.encode(), hashlib.sha256).digest()
    return GRANT_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def session_json(request: web.Request, s: UploadSession) -> dict[str, Any]:
    return {
        "id": s.id,
        "grant": grant_for(request, s.id),
        "bucket": s.bucket,
        "key": s.key,
        "size": s.size,
        "part_size": s.part_size,
        "parts": part_count(s),
        "name": s.file_name,
        "mtime": s.file_mtime,
        "created": _iso(s.created_at),
        "expires": _iso(s.expires_at),
        "url": f"/api/uploads/{s.id}",
    }


def _store(request: web.Request) -> Store:
    return request.app[keys.UPLOAD_SESSIONS]


# -- who is asking -----------------------------------------------------------------------------
def _auth_on(request: web.Request) -> bool:
    return keys.POLICY in request.app


class _Caller:
    """Who acts on a session: the request's principal, or the session's owner through its grant."""

    def __init__(self, principal: Principal | None, via_grant: bool):
        self.principal = principal  # None: auth is off
        self.via_grant = via_grant


async def _owner_principal(request: web.Request, s: UploadSession) -> Principal | None:
    service = request.app[keys.AUTH]
    if s.user_id is None:
        return await service.anonymous()
    user = await service.store.get_user_by_id(s.user_id)
    if user is None or user.disabled:
        return None
    return await service.principal_for(user, "upload-grant")


async def _session(request: web.Request) -> tuple[UploadSession, _Caller]:
    """The session the URL names, if this caller may touch it; 404 otherwise."""
    sid = request.match_info["id"]
    grant = request.headers.get(GRANT_HEADER)
    auth = _auth_on(request)
    who = authn.principal(request) if auth else None
    if auth and grant is None and who is not None and not who.authenticated:
        raise Unauthorized(headers=authn.BASIC_CHALLENGE)
    session = await _store(request).get_upload_session(sid) if _ID.fullmatch(sid) else None
    if session is None or session.expires_at <= time.time():
        raise NoSuchSession()
    if not auth:
        return session, _Caller(None, via_grant=False)
    if grant is not None:
        if not hmac.compare_digest(grant.strip().encode(), grant_for(request, sid).encode()):
            raise NoSuchSession()
        owner = await _owner_principal(request, session)
        if owner is None:
            raise NoSuchSession()  # the owner is gone or disabled: the grant died with them
        return session, _Caller(owner, via_grant=True)
    assert who is not None
    if who.via == "link" or not (who.admin or (who.user_id is not None and who.user_id == session.user_id)):
        raise NoSuchSession()
    return session, _Caller(who, via_grant=False)


async def _require_write(request: web.Request, s: UploadSession, caller: _Caller) -> None:
    """``write`` on the key, now: at every part and at completion, not only at creation."""
    if not caller.via_grant:
        await access.require(request, "write", s.bucket, s.key)
        return
    access.require_same_site(request, s.bucket, s.key)
    owner = caller.principal
    assert owner is not None
    ok = owner.may("write", s.bucket, s.key)
    checks = request.get(keys.ACCESS_CHECKS)
    if checks is not None:
        checks.append(("write", s.bucket, s.key, ok))
    if not ok:
        raise Forbidden(f"{owner.name or 'anonymous'} may no longer write {s.bucket}/{s.key}")


def _same_site(request: web.Request, s: UploadSession) -> None:
    access.require_same_site(request, s.bucket, s.key)


# -- create ---------------------------------------------------------------------------------
async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.content_length:
        raise BadRequest('send JSON: {"bucket": ..., "key": ..., "size": ..., "name": ..., "mtime": ...}')
    if request.content_length > MAX_CREATE_BODY:
        raise PayloadTooLarge(f"send a JSON body of at most {MAX_CREATE_BODY} bytes")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("malformed JSON body") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object")
    return body


def _int(body: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be a whole number of bytes")
    return value


def _mtime(body: dict[str, Any]) -> float | None:
    value = body.get("mtime")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest("mtime must be a number (seconds since 1970) or null")
    return float(value)


async def create(request: web.Request) -> web.Response:
    body = await _json_body(request)
    try:
        bucket, key = check_bucket(str(body["bucket"])), check_key(str(body["key"]))
    except KeyError:
        raise BadRequest("bucket and key are required") from None
    size = _int(body, "size", required=True)
    assert size is not None
    asked = _int(body, "part_size", required=False)
    name = body.get("name", key.rsplit("/", 1)[-1])
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise BadRequest(f"name must be a string of at most {MAX_NAME} characters")
    mtime = _mtime(body)
    content_type = body.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise BadRequest("content_type must be a string")

    await access.require(request, "write", bucket, key)
    settings = request.app[keys.SETTINGS]
    if size < 1:
        raise BadRequest("size must be at least 1 byte (send small files with PUT /files/BUCKET/KEY)")
    if size > settings.upload_limit:
        raise PayloadTooLarge(f"upload of {size} bytes exceeds the limit of {settings.upload_limit} bytes")
    part_size = choose_part_size(size, settings.part_size, settings.upload_memory_budget, asked)
    storage = request.app[keys.STORAGE]
    await storage.require_bucket(bucket)
    await files.refuse_overwrite(request, bucket, key)  # If-None-Match: * -> 412 now, before any byte is sent

    who = authn.principal(request) if _auth_on(request) else None
    now = time.time()
    upload_id = await multipart.create(
        storage, bucket, key, content_type=uploads.guess_type(key, content_type), metadata={UPLOADER_TAG: "1"}
    )
    session = UploadSession(
        id=secrets.token_urlsafe(18),
        user_id=who.user_id if who is not None else None,
        bucket=bucket,
        key=key,
        size=size,
        part_size=part_size,
        upload_id=upload_id,
        file_name=name,
        file_mtime=mtime,
        created_at=now,
        expires_at=now + settings.upload_session_hours * 3600,
    )
    try:
        await _store(request).create_upload_session(session)
    except BaseException:
        await asyncio.shield(storage.abort_multipart(bucket, key, upload_id))
        raise
    log.info("upload session %s: %s/%s, %d bytes in %d parts", session.id, bucket, key, size, part_count(session))
    return json_response(
        session_json(request, session), status=201, headers={"Location": f"/api/uploads/{session.id}", **_NO_CACHE}
    )


# -- parts ----------------------------------------------------------------------------------
def _part_number(request: web.Request, s: UploadSession) -> int:
    raw = request.match_info["n"]
    number = int(raw) if _PART_NUMBER.fullmatch(raw) else 0
    if not 1 <= number <= part_count(s):
        raise BadRequest(f"part number must be between 1 and {part_count(s)}, got {raw[:12]!r}")
    return number


async def _read_part(request: web.Request, length: int, checks: dict[str, bytes]) -> tuple[bytearray, bytes]:
    """The part's bytes and their MD5, hashed as they arrive (64 KiB at a time, never blocking long)."""
    buf = bytearray(length)
    md5 = hashlib.md5()
    sha = hashlib.sha256() if "expect_sha256" in checks else None
    filled = 0
    try:
        async for piece in request.content.iter_chunked(uploads.READ_CHUNK):
            end = filled + len(piece)
            if end > length:  # aiohttp stops at Content-Length; never trust that twice
                raise BadRequest(f"part body longer than its {length} bytes")
            buf[filled:end] = piece
            md5.update(piece)
            if sha is not None:
                sha.update(piece)
            filled = end
    except (ConnectionResetError, ConnectionError, asyncio.IncompleteReadError):
        raise ClientGone() from None
    if filled != length:
        raise BadRequest(f"part body ended after {filled} of {length} bytes; send the part again")
    if "expect_md5" in checks and md5.digest() != checks["expect_md5"]:
        raise ChecksumMismatch("Content-MD5 does not match the part received; it was not stored, send it again")
    if sha is not None and sha.digest() != checks["expect_sha256"]:
        raise ChecksumMismatch("SHA-256 of the part does not match the checksum sent; it was not stored, send it again")
    return buf, md5.digest()


async def put_part(request: web.Request) -> web.Response:
    session, caller = await _session(request)
    await _require_write(request, session, caller)
    number = _part_number(request, session)
    length = part_length(session, number)
    uploads.refuse_transfer_codings(request)
    if request.content_length is None:
        raise BadRequest(f"send part {number} with its Content-Length ({length} bytes), not chunked")
    if request.content_length != length:
        raise BadRequest(f"part {number} must be exactly {length} bytes, got Content-Length {request.content_length}")
    checks = uploads.expected_checksums(request)  # malformed: 400 before the body
    await uploads.send_continue(request)
    registry = request.app[keys.UPLOADS]
    try:
        with uploads.registered(request):
            # The whole part is held once (botocore needs a body of known length it
            # may send again), reserved from the budget first: when it is spent,
            # the request waits unread and TCP slows the client.
            async with request.app[keys.BUDGET].reserve(length):
                data, md5 = await _read_part(request, length, checks)
                etag = await _upload_part(request, session, number, data, md5)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if registry.shutting_down and task is not None:
            task.uncancel()  # nothing to undo: the part landed whole or not at all
            raise ShuttingDown("gateway is shutting down; send this part again") from None
        raise
    return json_response({"part": number, "size": length, "etag": etag.strip('"'), "md5": md5.hex()}, headers=_NO_CACHE)


async def _upload_part(request: web.Request, s: UploadSession, number: int, data: bytearray, md5: bytes) -> str:
    storage = request.app[keys.STORAGE]
    try:
        await multipart.before_replacing(storage, s.bucket, s.key, s.upload_id, number, md5)
        return await multipart.upload_part(storage, s.bucket, s.key, s.upload_id, number, memoryview(data), md5)
    except multipart.NoSuchUpload:
        await _forget(request, s)
        raise


async def _forget(request: web.Request, s: UploadSession) -> None:
    """S3 no longer has the multipart upload (a lifecycle rule, someone's abort): drop the session too."""
    await _store(request).delete_upload_session(s.id)
    log.info("upload session %s: its multipart upload is gone; session dropped", s.id)


# -- status, list, complete, abort ----------------------------------------------------------------
async def _parts(request: web.Request, s: UploadSession) -> dict[int, multipart.Part]:
    try:
        return await multipart.list_parts(request.app[keys.STORAGE], s.bucket, s.key, s.upload_id)
    except multipart.NoSuchUpload:
        await _forget(request, s)
        raise


def _done(s: UploadSession, parts: dict[int, multipart.Part]) -> list[multipart.Part]:
    """The parts S3 holds at their right length (anything else counts as missing)."""
    return [p for n, p in sorted(parts.items()) if n <= part_count(s) and p.size == part_length(s, n)]


async def status(request: web.Request) -> web.Response:
    session, _ = await _session(request)
    done = _done(session, await _parts(request, session))
    numbers = {p.number for p in done}
    body = session_json(request, session)
    body.update(
        done=[{"part": p.number, "size": p.size, "etag": p.etag.strip('"')} for p in done],
        missing=[n for n in range(1, part_count(session) + 1) if n not in numbers],
        received=sum(p.size for p in done),
    )
    return json_response(body, headers=_NO_CACHE)


async def mine(request: web.Request) -> web.Response:
    """The caller's unfinished sessions, oldest first (a page lists them after a reload)."""
    user_id = None
    if _auth_on(request):
        who = authn.principal(request)
        if not who.authenticated:
            raise Unauthorized(headers=authn.BASIC_CHALLENGE)
        user_id = who.user_id
    now = time.time()
    found = [s for s in await _store(request).list_upload_sessions(user_id) if s.expires_at > now]
    return json_response({"uploads": [session_json(request, s) for s in found]}, headers=_NO_CACHE)


def _ranges(numbers: list[int]) -> str:
    out: list[str] = []
    for n in numbers:
        if out and n == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out[:20]) + (", ..." if len(out) > 20 else "")


async def complete(request: web.Request) -> web.Response:
    session, caller = await _session(request)
    await _require_write(request, session, caller)
    done = _done(session, await _parts(request, session))
    if len(done) != part_count(session):
        have = {p.number for p in done}
        missing = [n for n in range(1, part_count(session) + 1) if n not in have]
        raise Conflict(f"{len(missing)} of {part_count(session)} parts are missing: {_ranges(missing)}")
    await files.refuse_overwrite(request, session.bucket, session.key)
    try:
        etag = await multipart.complete(
            request.app[keys.STORAGE],
            session.bucket,
            session.key,
            session.upload_id,
            done,
            if_none_match=request.headers.get("If-None-Match", "").strip() == "*",
        )
    except multipart.NoSuchUpload:
        await _forget(request, session)
        raise
    await _store(request).delete_upload_session(session.id)
    metrics.upload_ended("completed")
    log.info("upload session %s completed: %s/%s", session.id, session.bucket, session.key)
    body = {"bucket": session.bucket, "key": session.key, "size": session.size, "etag": etag.strip('"')}
    return json_response(body, status=201, headers={"ETag": etag, "Location": object_path(session.bucket, session.key)})


async def abort(request: web.Request) -> web.Response:
    """Cancel: needs no write right (the owner may always drop their own unfinished upload)."""
    session, _ = await _session(request)
    _same_site(request, session)
    await request.app[keys.STORAGE].abort_multipart(session.bucket, session.key, session.upload_id)
    if await _store(request).delete_upload_session(session.id):  # a cancel racing the sweeper counts once
        metrics.upload_ended("aborted")
    return json_response({"aborted": session.id, "bucket": session.bucket, "key": session.key}, headers=_NO_CACHE)


# -- lifecycle --------------------------------------------------------------------------------
async def sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the sessions live in the users store; with auth off it is opened for them alone."""
    service = app.get(keys.AUTH)
    if service is not None:
        app[keys.UPLOAD_SESSIONS] = service.store
        yield
        return
    settings = app[keys.SETTINGS]
    store = await open_store(settings.data_dir, settings.users_db)
    app[keys.UPLOAD_SESSIONS] = store
    try:
        yield
    finally:
        await store.close()


async def sweep_expired(app: web.Application, now: float | None = None) -> int:
    """Abort the multipart uploads of expired sessions and drop the sessions. Returns how many.

    Run by the upload sweeper (storage/journal.py's sweep_forever) in every
    worker of every instance: whoever deletes the row first aborts the upload,
    so each is aborted exactly once; a failed abort puts the row back.
    """
    store = app.get(keys.UPLOAD_SESSIONS)
    if store is None:
        return 0  # not opened yet (start-up): the next sweep will see them
    storage = app[keys.STORAGE]
    swept = 0
    for s in await store.expired_upload_sessions(time.time() if now is None else now):
        if not await store.delete_upload_session(s.id):
            continue  # another sweeper claimed it first
        try:
            await storage.abort_multipart(s.bucket, s.key, s.upload_id)
        except GatewayError as exc:  # S3 down: put the row back, try again next time
            log.warning("expired upload session %s: abort failed: %s", s.id, exc.message)
            await store.create_upload_session(s)
            continue
        audit.record("upload_expired", bucket=s.bucket, key=s.key, outcome="aborted")
        metrics.upload_ended("aborted")
        swept += 1
    if swept:
        log.info("aborted %d expired upload session(s)", swept)
    return swept
