"""The permission matrix, shared by the fast suite (create_app + moto) and the integration suite (gunicorn + SeaweedFS).

Every route the gateway serves is tried by users who hold exactly one action
(read, list, write or delete), granted on a whole bucket or on one folder of
it, and on a bucket where they hold nothing. A request that is allowed must
succeed *and* do what it says in S3; a refused one must be a 403 and leave S3
exactly as it was.

The expectation (``expected_allowed``) is written out here by hand from the
README's rules, never computed with s3gate's own rule code: the point is to
catch a route that asks for the wrong right.

Requests carry no ``Sec-Fetch-*`` or ``Origin`` header (as curl and wget), so
the CSRF check never decides an outcome here.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

ACTIONS = ("read", "list", "write", "delete")
PASSWORD = "matrix password 1234"  # >= 12 characters
FOLDER = "docs/"  # the folder a "docs" user holds
# The objects every check starts from. "docs-private/" shares docs/'s first
# letters: a rule on docs/ must not reach it.
SEEDS = {
    "docs/a.txt": b"docs a",
    "docs-private/a.txt": b"private a",
    "top.txt": b"top",
}
NEW = b"new content"


def _tar_of_new() -> bytes:
    """A tar archive holding new.txt (NEW): the body of an ?extract=tar upload."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("new.txt")
        info.size = len(NEW)
        tar.addfile(info, io.BytesIO(NEW))
    return out.getvalue()


NEW_TAR = _tar_of_new()
# Scopes: which rule the user holds, and which bucket the requests go to.
#   bucket: BUCKET:ACTION, requests on BUCKET
#   docs:   BUCKET/docs:ACTION, requests on BUCKET
#   other:  BUCKET:ACTION, requests on OTHER (where the user holds nothing)
SCOPES = ("bucket", "docs", "other")


def user_name(action: str, scope: str) -> str:
    """The user holding ``action`` in ``scope`` ("other" reuses the whole-bucket users)."""
    return f"{action}-{'docs' if scope == 'docs' else 'bucket'}"


def users(bucket: str) -> dict[str, str]:
    """user name -> rule text (BUCKET[/PREFIX]:ACTION), one action each."""
    out = {}
    for action in ACTIONS:
        out[user_name(action, "bucket")] = f"{bucket}:{action}"
        out[user_name(action, "docs")] = f"{bucket}/{FOLDER.rstrip('/')}:{action}"
    return out


@dataclass(frozen=True)
class Route:
    id: str
    method: str
    path: str  # "{b}" stands for the bucket
    needs: str  # the action the route must ask for
    target: str  # the key (or folder, ending in "/" or "") the right is checked on
    form: str | None = None  # a multipart upload with this filename
    put: bool = False  # a raw body (NEW)
    tar: bool = False  # a raw body that is a tar holding new.txt (NEW_TAR)
    kind: str = field(default="")  # read | link | list | seedlist | write | delete | buckets | archive | rdelete

    def url(self, bucket: str) -> str:
        return self.path.replace("{b}", bucket)


def _routes() -> list[Route]:
    routes = [
        # The seed's four, as its users type them.
        Route("seed-upload", "POST", "/uploads3/{b}", "write", "", form="new.txt", kind="write"),
        Route("seed-upload-slash", "POST", "/uploads3/{b}/", "write", "", form="new.txt", kind="write"),
        Route("seed-list", "GET", "/listfiles/{b}/", "list", "", kind="seedlist"),
        Route("seed-list-noslash", "GET", "/listfiles/{b}", "list", "", kind="seedlist"),
        # The REST face: bucket level.
        Route("form-root", "POST", "/files/{b}/", "write", "", form="new.txt", kind="write"),
        Route("form-root-noslash", "POST", "/files/{b}", "write", "", form="new.txt", kind="write"),
        Route("list-root", "GET", "/files/{b}/", "list", "", kind="list"),
        Route("list-root-noslash", "GET", "/files/{b}", "list", "", kind="list"),
        Route("buckets", "GET", "/files", "list", "", kind="buckets"),
    ]
    for folder in ("docs/", "docs-private/"):
        name = folder.rstrip("/")
        key, new = folder + "a.txt", folder + "new.txt"
        routes += [
            Route(f"seed-link-{name}", "GET", "/downloads3/{b}/" + key, "read", key, kind="link"),
            Route(f"seed-delete-get-{name}", "GET", "/deletefile/{b}/" + key, "delete", key, kind="delete"),
            Route(f"seed-delete-{name}", "DELETE", "/deletefile/{b}/" + key, "delete", key, kind="delete"),
            Route(f"form-{name}", "POST", "/files/{b}/" + folder, "write", folder, form="new.txt", kind="write"),
            Route(f"put-{name}", "PUT", "/files/{b}/" + new, "write", new, put=True, kind="write"),
            Route(f"get-{name}", "GET", "/files/{b}/" + key, "read", key, kind="read"),
            Route(f"head-{name}", "HEAD", "/files/{b}/" + key, "read", key, kind="read"),
            Route(f"delete-{name}", "DELETE", "/files/{b}/" + key, "delete", key, kind="delete"),
            Route(f"list-{name}", "GET", "/files/{b}/" + folder, "list", folder, kind="list"),
            # Folder routes: tar in needs write on the folder; a folder archive and a
            # recursive delete need list on it (each key is then filtered by read or
            # delete: the one-action users here get an empty archive / delete nothing).
            Route(f"extract-{name}", "PUT", "/files/{b}/" + folder + "?extract=tar", "write", folder, tar=True, kind="write"),
            Route(f"archive-{name}", "GET", "/files/{b}/" + folder + "?archive=tar", "list", folder, kind="archive"),
            Route(f"rdelete-{name}", "DELETE", "/files/{b}/" + folder + "?recursive=1", "list", folder, kind="rdelete"),
        ]
    return routes


ROUTES = _routes()
WRITE_ROUTES = [r for r in ROUTES if r.needs == "write"]


def expected_allowed(route: Route, action: str, scope: str) -> bool:
    """Does a user holding only ``action`` in ``scope`` get through ``route``?"""
    if action != route.needs or scope == "other":
        return False
    if scope == "bucket":
        return True
    # A docs/ rule covers keys under docs/; a listing of a folder that leads
    # to docs/ (the bucket root) is allowed too, filtered to what is listable.
    return route.target.startswith(FOLDER) or (route.needs == "list" and route.target == "")


def visible(scope: str, keys: list[str]) -> list[str]:
    return sorted(k for k in keys if scope == "bucket" or k.startswith(FOLDER))


# -- transports ------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Send(Protocol):
    def __call__(
        self, method: str, url: str, *, user: str | None, form: str | None = None, body: bytes | None = None
    ) -> Awaitable[Reply]: ...


class Objects(Protocol):
    """What the store holds: a snapshot (key -> MD5 hex of the content), and a reset to SEEDS."""

    async def snapshot(self, bucket: str) -> dict[str, str]: ...

    async def reset(self, bucket: str) -> None: ...


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def etag_md5(etag: str) -> str | None:
    """An object's MD5 when its ETag is one (a single PUT; not a multipart upload's "md5-N")."""
    etag = etag.strip('"')
    return etag if len(etag) == 32 and "-" not in etag else None


SEED_DIGESTS = {key: md5(data) for key, data in SEEDS.items()}


# -- one check ----------------------------------------------------------------------
async def check(
    route: Route, action: str, scope: str, *, send: Send, objects: Objects, bucket: str, other: str
) -> str | None:
    """Run ``route`` as the user of (action, scope); None when all is as expected, else what went wrong."""
    where = other if scope == "other" else bucket
    await objects.reset(where)
    before = await objects.snapshot(where)
    assert before == SEED_DIGESTS, before
    user = user_name(action, scope)
    allowed = expected_allowed(route, action, scope)
    body = NEW if route.put else NEW_TAR if route.tar else None
    reply = await send(route.method, route.url(where), user=user, form=route.form, body=body)
    after = await objects.snapshot(where)
    said = f"{route.method} {route.url('B')} as {user} ({'allowed' if allowed else 'refused'} expected)"
    status_line = f"got {reply.status} {reply.body[:200]!r}"

    if route.kind == "buckets":  # never refused, filtered
        if reply.status != 200:
            return f"{said}: {status_line}"
        names = [b["name"] for b in json.loads(reply.body)["buckets"]]
        if (where in names) != allowed:
            return f"{said}: bucket {'missing from' if allowed else 'shown in'} {names}"
        return None if after == before else f"{said}: S3 changed"

    if not allowed:
        if reply.status != 403:
            return f"{said}: {status_line}"
        return None if after == before else f"{said}: S3 changed from {sorted(before)} to {sorted(after)}"

    expected_after = dict(before)
    if route.kind == "write":
        if reply.status != 201:
            return f"{said}: {status_line}"
        expected_after[(route.target + "new.txt") if route.form or route.tar else route.target] = md5(NEW)
    elif route.kind == "delete":
        if reply.status != 200:
            return f"{said}: {status_line}"
        del expected_after[route.target]
    elif route.kind == "read":
        if reply.status != 200:
            return f"{said}: {status_line}"
        if route.method == "GET" and reply.body != SEEDS[route.target]:
            return f"{said}: body {reply.body!r}"
        if int(reply.headers.get("content-length", -1)) != len(SEEDS[route.target]):
            return f"{said}: content-length {reply.headers.get('content-length')}"
    elif route.kind == "link":
        if reply.status != 302:
            return f"{said}: {status_line}"
        link = urlsplit(reply.headers["location"])
        fetched = await send("GET", f"{link.path}?{link.query}", user=None)  # a link needs no credentials
        if fetched.status != 200 or fetched.body != SEEDS[route.target]:
            return f"{said}: following the link gave {fetched.status} {fetched.body[:200]!r}"
    elif route.kind == "seedlist":
        if reply.status != 200:
            return f"{said}: {status_line}"
        listed = sorted(o["key"] for o in json.loads(reply.body))
        if listed != visible(scope, list(before)):
            return f"{said}: listed {listed}"
    elif route.kind == "list":
        if reply.status != 200:
            return f"{said}: {status_line}"
        page = json.loads(reply.body)
        # What a delimiter listing of the folder holds: its objects, and one entry per subfolder.
        rests = [k[len(route.target) :] for k in before if k.startswith(route.target)]
        want_objects = visible(scope, [route.target + r for r in rests if "/" not in r])
        want_folders = visible(scope, list({route.target + r.split("/")[0] + "/" for r in rests if "/" in r}))
        got = (sorted(o["key"] for o in page["objects"]), sorted(page["folders"]))
        if got != (want_objects, want_folders):
            return f"{said}: listed {got}, expected {(want_objects, want_folders)}"
    elif route.kind == "archive":
        if reply.status != 200:
            return f"{said}: {status_line}"
        with tarfile.open(fileobj=io.BytesIO(reply.body), mode="r:") as tar:
            members = tar.getnames()
        if members:  # a one-action user may list or read, never both
            return f"{said}: the archive holds {members}"
    elif route.kind == "rdelete":
        if reply.status != 200:
            return f"{said}: {status_line}"
    else:  # pragma: no cover - a route without a kind is a bug in this table
        raise AssertionError(route)
    if after != expected_after:
        return f"{said}: S3 holds {sorted(after)}, expected {sorted(expected_after)}"
    return None
