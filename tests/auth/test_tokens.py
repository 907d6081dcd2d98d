"""API tokens: prefix, shown once and stored hashed, expiry, revocation, scopes within the owner's rights."""

import hashlib
import sqlite3
import time

import pytest

from s3gate.auth.config import MAX_DURATION
from s3gate.auth.rules import Rule
from s3gate.auth.service import InvalidToken, iso_time, token_json
from s3gate.errors import BadRequest, NotFound

from .conftest import PASSWORD, basic, bearer

pytestmark = pytest.mark.usefixtures("users_backend")  # SQLite, then PostgreSQL


async def alice(service, *rules):
    await service.add_user("alice", PASSWORD)
    for r in rules:
        await service.grant("alice", Rule.parse(r))


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_token_format_and_storage(service, auth_settings, tmp_path):
    await alice(service, "files:read")
    secret, token = await service.create_token("alice", label="laptop")
    assert secret.startswith("s3g_") and len(secret) == 4 + 43
    assert token.owner == "alice" and token.label == "laptop" and token.expires_at is None
    db = tmp_path / "data" / "users.db"
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT token_hash FROM tokens").fetchone()[0]
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    raw = b"".join(p.read_bytes() for p in db.parent.glob("users.db*"))
    assert secret.encode() not in raw and secret[4:].encode() not in raw
    who = await service.authenticate_token(secret)
    assert who.name == "alice" and who.via == "token" and who.token_id == token.id


async def test_token_expiry(service, clock):
    await alice(service, "files:read")
    secret, _ = await service.create_token("alice", expires_in=3600)
    assert (await service.authenticate_token(secret)).name == "alice"
    clock.advance(3599)
    await service.authenticate_token(secret)
    clock.advance(2)
    with pytest.raises(InvalidToken):
        await service.authenticate_token(secret)
    assert [t.state(clock()) for t in await service.list_tokens("alice")] == ["expired"]


async def test_token_expires_exactly_at_its_expiry_second(service, clock):
    await alice(service, "files:read")
    secret, token = await service.create_token("alice", expires_in=3600)
    assert token.expires_at == clock() + 3600
    clock.advance(3600 - 0.001)  # the last moment before expires_at: still good
    assert (await service.authenticate_token(secret)).name == "alice"
    assert token.state(clock()) == "active"
    clock.now = token.expires_at  # at expires_at itself: expired
    assert token.state(clock()) == "expired"
    with pytest.raises(InvalidToken):
        await service.authenticate_token(secret)


async def test_token_revocation_is_immediate(service):
    await alice(service, "files:read")
    secret, token = await service.create_token("alice")
    await service.authenticate_token(secret)
    await service.revoke_token(token.id)
    with pytest.raises(InvalidToken):
        await service.authenticate_token(secret)
    with pytest.raises(NotFound):
        await service.revoke_token("nope")


async def test_bad_tokens(service):
    await alice(service, "files:read")
    secret, _ = await service.create_token("alice")
    for bad in ("s3g_", "s3g_short", secret[:-1] + ("A" if secret[-1] != "A" else "B"), "x" + secret):
        with pytest.raises(InvalidToken):
            await service.authenticate_token(bad)
    with pytest.raises(InvalidToken):  # as a Basic password, only with its owner's name
        await service.authenticate_token(secret, name="mallory")


async def test_scope_must_be_within_the_owner_rights(service):
    await alice(service, "files/docs:read,list,write")
    with pytest.raises(BadRequest, match="files/docs/:delete"):
        await service.create_token("alice", scope=[Rule.parse("files/docs:delete")])
    with pytest.raises(BadRequest, match="files:read"):
        await service.create_token("alice", scope=[Rule.parse("files:read")])
    with pytest.raises(BadRequest, match="docs-private"):
        await service.create_token("alice", scope=[Rule.parse("files/docs-private:read")])
    with pytest.raises(BadRequest, match="empty scope"):
        await service.create_token("alice", scope=[])


async def test_scope_narrower_than_the_owner(service):
    await alice(service, "files/docs:read,list,write,delete")
    secret, token = await service.create_token("alice", scope=[Rule.parse("files/docs/2024:read")])
    who = await service.authenticate_token(secret)
    assert who.may("read", "files", "docs/2024/a.pdf")
    assert not who.may("read", "files", "docs/2023/a.pdf")
    assert not who.may("write", "files", "docs/2024/a.pdf")
    assert not who.may("delete", "files", "docs/2024/a.pdf")
    owner = await service.authenticate_password("alice", PASSWORD, "127.0.0.1")
    assert owner.may("write", "files", "docs/2024/a.pdf")


async def test_token_loses_what_its_owner_loses(service):
    await alice(service, "files/docs:read")
    secret, _ = await service.create_token("alice", scope=[Rule.parse("files/docs:read")])
    assert (await service.authenticate_token(secret)).may("read", "files", "docs/a")
    await service.revoke("alice", Rule.parse("files/docs:read"))
    assert not (await service.authenticate_token(secret)).may("read", "files", "docs/a")


async def test_disabled_or_deleted_owner_kills_tokens(service):
    await alice(service, "files:read")
    secret, _ = await service.create_token("alice")
    await service.set_disabled("alice", True)
    with pytest.raises(InvalidToken):
        await service.authenticate_token(secret)
    await service.set_disabled("alice", False)
    await service.authenticate_token(secret)
    await service.delete_user("alice")
    with pytest.raises(InvalidToken):
        await service.authenticate_token(secret)


async def test_admin_tokens_and_listing(service):
    await service.add_user("root", PASSWORD, admin=True)
    await alice(service, "files:read")
    secret, _ = await service.create_token("root", scope=[Rule.parse("photos:read")])
    who = await service.authenticate_token(secret)
    assert who.admin and who.may("read", "photos", "x") and not who.may("read", "files", "x")
    await service.create_token("alice")
    assert {t.owner for t in await service.list_tokens()} == {"root", "alice"}
    assert {t.owner for t in await service.list_tokens("alice")} == {"alice"}


async def test_a_listed_token_shows_every_field(service, clock):
    """The shape GET /api/tokens and `s3gate tokens list --json` return."""
    await alice(service, "files:read")
    created = clock()
    secret, token = await service.create_token(
        "alice", label="laptop", expires_in=3600, scope=[Rule.parse("files/docs:read")]
    )
    clock.advance(5)
    await service.authenticate_token(secret)
    [listed] = await service.list_tokens("alice")
    assert token_json(listed, clock()) == {
        "id": token.id,
        "user": "alice",
        "label": "laptop",
        "created": iso_time(created),
        "expires": iso_time(created + 3600),
        "last_used": iso_time(created + 5),
        "state": "active",
        "scope": ["files/docs/:read"],
    }


async def test_last_used_is_recorded_sparingly(service, clock):
    await alice(service, "files:read")
    secret, token = await service.create_token("alice")
    await service.authenticate_token(secret)
    first = (await service.store.get_token(token.id)).last_used_at
    assert first == clock()
    clock.advance(10)
    await service.authenticate_token(secret)
    assert (await service.store.get_token(token.id)).last_used_at == first
    clock.advance(61)
    await service.authenticate_token(secret)
    assert (await service.store.get_token(token.id)).last_used_at == clock()


# -- far expiries (issue 7, item 7) ---------------------------------------------------
API_ALICE = basic("alice", PASSWORD)


@pytest.mark.parametrize(
    "body",
    [
        b'{"expires": "999999999y"}',
        b'{"expires": 1e400}',  # JSON's number arrives as inf
        b'{"expires": -1e400}',
        b'{"expires": NaN}',
        b'{"expires": ' + b"1" * 400 + b"}",  # an int too large for a float
        b'{"expires": "101y"}',
        b'{"expires": "1e9"}',
        b'{"expires": "1_000"}',
    ],
)
async def test_api_refuses_absurd_expiries_and_stores_nothing(make_client, body):
    client, service = await make_client()
    await alice(service, "files:read")
    resp = await client.post("/api/tokens", data=body, headers={**API_ALICE, "Content-Type": "application/json"})
    assert resp.status == 400, await resp.text()
    assert "bad duration" in (await resp.json())["message"]
    assert await service.list_tokens() == []


async def test_the_longest_expiry_allowed(make_client, clock):
    client, service = await make_client()
    await alice(service, "files:read")
    resp = await client.post("/api/tokens", json={"expires": "100y"}, headers=API_ALICE)
    assert resp.status == 201
    assert (await resp.json())["expires"].startswith(str(time.gmtime(clock() + MAX_DURATION).tm_year))
    with pytest.raises(BadRequest, match="at most"):
        await service.create_token("alice", expires_in=MAX_DURATION + 1)  # the service checks too


async def test_the_shortest_expiry_and_the_label(service):
    await alice(service, "files:read")
    _, token = await service.create_token("alice", expires_in=1)  # one second is in the future
    assert token.label == ""  # none given
    with pytest.raises(BadRequest, match="in the future"):
        await service.create_token("alice", expires_in=0)  # born expired
    _, token = await service.create_token("alice", label="x" * 150)
    assert token.label == "x" * 100  # labels are cut at 100 characters


FAR = [
    ("1e300", "9999-12-31T23:59:59+00:00", "active"),
    ("9e999", "9999-12-31T23:59:59+00:00", "active"),  # SQLite's Inf, as {"expires": 1e400} once stored
    ("-9e999", "0001-01-01T00:00:00+00:00", "expired"),
    ("'soon'", "1970-01-01T00:00:00+00:00", "expired"),  # not a number at all: fails closed
]


def store_expiry(db, sql_value: str) -> None:
    """What an older s3gate (or a hand edit) may have left in the database."""
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE tokens SET expires_at = {sql_value}")


@pytest.mark.sqlite_only  # reads the SQLite file itself
@pytest.mark.parametrize("sql_value, shown, state", FAR)
async def test_api_lists_any_stored_expiry(make_client, tmp_path, sql_value, shown, state):
    client, service = await make_client()
    await alice(service, "files:read")
    secret, _ = await service.create_token("alice")
    store_expiry(tmp_path / "data" / "users.db", sql_value)
    resp = await client.get("/api/tokens", headers=API_ALICE)
    assert resp.status == 200
    [listed] = (await resp.json())["tokens"]
    assert (listed["expires"], listed["state"]) == (shown, state)
    resp = await client.get("/files/files/a", headers=bearer(secret))
    assert resp.status == (200 if state == "active" else 401)  # garbage fails closed
