"""API tokens: prefix, shown once and stored hashed, expiry, revocation, scopes within the owner's rights."""

import hashlib
import sqlite3

import pytest

from s3gate.auth.rules import Rule
from s3gate.auth.service import InvalidToken
from s3gate.errors import BadRequest, NotFound

from .conftest import PASSWORD


async def alice(service, *rules):
    await service.add_user("alice", PASSWORD)
    for r in rules:
        await service.grant("alice", Rule.parse(r))


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
