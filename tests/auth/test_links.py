"""Gateway-signed links: the signer's rights, read-only, one object, expiry and tampering."""

import time
from urllib.parse import urlencode

from s3gate.auth.rules import Rule
from s3gate.auth.service import Principal
from s3gate.http.authn import READ_ONLY
from s3gate.http.links import LinkSigner

from .conftest import PASSWORD

SIGNER = LinkSigner(b"k" * 32)  # the same key build_app installs


def link(bucket, key, by="alice", lifetime=60, now=None):
    return f"/files/{bucket}/{key}?" + urlencode(SIGNER.sign(bucket, key, lifetime=lifetime, by=by, now=now))


async def with_alice(make_client):
    client, service = await make_client()
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse("files/docs:read,list,write"))
    return client, service


async def test_a_valid_link_downloads_as_its_signer(make_client):
    client, _ = await with_alice(make_client)
    resp = await client.get(link("files", "docs/a.txt"))
    assert resp.status == 200
    assert (await resp.json())["user"] == "alice"


async def test_expired_and_tampered_links(make_client):
    client, _ = await with_alice(make_client)
    assert (await client.get(link("files", "docs/a.txt", now=time.time() - 120))).status == 403
    good = link("files", "docs/a.txt")
    assert (await client.get(good.replace("sig=", "sig=A"))).status == 403
    assert (await client.get(good.replace("by=alice", "by=root"))).status == 403
    later = good.replace("expires=", "expires=9")
    assert (await client.get(later)).status == 403


async def test_a_link_opens_only_its_object_and_only_for_reading(make_client):
    client, _ = await with_alice(make_client)
    query = link("files", "docs/a.txt").split("?", 1)[1]
    assert (await client.get(f"/files/files/docs/b.txt?{query}")).status == 403
    assert (await client.put(f"/files/files/docs/a.txt?{query}", data=b"x")).status == 403
    assert (await client.get(f"/files/files/docs/?{query}")).status == 403
    assert (await client.delete(f"/files/files/docs/a.txt?{query}")).status == 403


def test_a_link_principal_is_narrowed_to_reading():
    """The policy's link check is one guard; the principal's own scope is the other."""
    owner = Principal("alice", "password", rules=(Rule.parse("files:all"),), user_id=1)
    via_link = owner.narrowed(READ_ONLY, via="link")
    assert via_link.via == "link" and via_link.may("read", "files", "docs/a.txt")
    assert not any(via_link.may(action, "files", "docs/a.txt") for action in ("write", "delete"))


async def test_the_link_dies_with_the_signers_rights(make_client):
    client, service = await with_alice(make_client)
    url = link("files", "docs/a.txt")
    assert (await client.get(url)).status == 200
    await service.revoke("alice", Rule.parse("files/docs:read"))
    resp = await client.get(url)
    assert resp.status == 403 and "signer" in (await resp.json())["message"]
    await service.grant("alice", Rule.parse("files/docs:read"))
    assert (await client.get(url)).status == 200
    await service.set_disabled("alice", True)
    resp = await client.get(url)
    assert resp.status == 403 and "signer" in (await resp.json())["message"]


async def test_a_link_for_something_the_signer_never_could_read(make_client):
    client, _ = await with_alice(make_client)
    assert (await client.get(link("files", "docs-private/a.txt"))).status == 403


async def test_anonymous_links_follow_the_public_rules(make_client):
    client, service = await make_client()
    assert (await client.get(link("files", "pub/a.txt", by=""))).status == 403
    await service.grant("*", Rule.parse("files/pub:read"))
    resp = await client.get(link("files", "pub/a.txt", by=""))
    assert resp.status == 200 and (await resp.json())["user"] is None
