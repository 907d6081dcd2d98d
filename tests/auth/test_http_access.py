"""The middleware and policy through HTTP, on a stand-in handler: 401 vs 403, Basic, Bearer, rules, listings."""

import pytest
from yarl import URL

from s3gate.auth.rules import Rule

from .conftest import PASSWORD, basic, bearer

CHALLENGE = 'Basic realm="s3gate"'


async def setup_alice(service, *rules):
    await service.add_user("alice", PASSWORD)
    for r in rules:
        await service.grant("alice", Rule.parse(r))


async def test_no_credentials_is_401_with_a_basic_challenge(make_client):
    client, _ = await make_client()
    resp = await client.get("/files/files/a.txt")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == CHALLENGE


async def test_allowed_when_granted_and_403_when_not(make_client):
    client, service = await make_client()
    await setup_alice(service, "files/docs:read")
    resp = await client.get("/files/files/docs/a.txt", headers=basic("alice", PASSWORD))
    assert resp.status == 200
    assert (await resp.json())["user"] == "alice"
    resp = await client.get("/files/files/docs-private/a.txt", headers=basic("alice", PASSWORD))
    assert resp.status == 403
    assert "WWW-Authenticate" not in resp.headers


async def test_wrong_password_and_unknown_user_are_401_alike(make_client):
    client, service = await make_client()
    await setup_alice(service, "files:read")
    answers = []
    for who in ("alice", "nobody"):
        resp = await client.get("/files/files/a.txt", headers=basic(who, "not the password"))
        answers.append((resp.status, resp.headers.get("WWW-Authenticate"), await resp.json()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401 and answers[0][1] == CHALLENGE


# Which right each real route asks for (PUT = write, DELETE = delete, ...) is
# checked on the real app, route by route: tests/http/test_permissions.py and
# tests/integration/test_permissions.py. Here the stand-in handler only reads,
# so what is tested is the policy itself: prefixes, buckets, public rules.
@pytest.mark.parametrize(
    "path, expected",
    [
        ("/files/files/docs/a.txt", 200),
        ("/files/files/docs-private/a.txt", 403),  # docs/ is a folder, not a string prefix
        ("/files/files/readme.txt", 403),
        ("/files/other/docs/a.txt", 403),
        ("/files/files/pub/x.txt", 200),  # opened to everyone, signed-in users included
        ("/files/files/pubx/x.txt", 403),
    ],
)
async def test_rules_decide_by_folder_bucket_and_public_rules(make_client, path, expected):
    client, service = await make_client()
    await setup_alice(service, "files/docs:read")
    await service.grant("*", Rule.parse("files/pub:read"))
    resp = await client.get(path, headers=basic("alice", PASSWORD))
    assert resp.status == expected


async def test_anonymous_public_rules_and_the_setting(make_client):
    client, service = await make_client(public="files/open:read,list; photos:read")
    await service.grant("*", Rule.parse("files/pub:read"))
    assert (await client.get("/files/files/pub/a.txt")).status == 200
    assert (await client.get("/files/files/open/a.txt")).status == 200
    assert (await client.get("/files/files/open/")).status == 200
    assert (await client.get("/files/photos/cat.jpg")).status == 200
    resp = await client.get("/files/files/pubx/a.txt")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE
    assert (await client.put("/files/files/pub/a.txt", data=b"x")).status == 401


async def test_listing_shows_only_what_the_caller_may_list(make_client):
    entries = ["docs/", "docs-private/", "readme.txt", "docs/a/", "docs/a/x.txt", "docs/b.txt"]
    client, service = await make_client(entries=entries)
    await setup_alice(service, "files/docs/a:read,list")
    resp = await client.get("/files/files/", headers=basic("alice", PASSWORD))
    assert resp.status == 200
    assert (await resp.json())["entries"] == ["docs/", "docs/a/", "docs/a/x.txt"]
    resp = await client.get("/files/files/docs-private/", headers=basic("alice", PASSWORD))
    assert resp.status == 403


async def test_admin_may_do_everything(make_client):
    client, service = await make_client()
    await service.add_user("root", PASSWORD, admin=True)
    for method in ("GET", "PUT", "DELETE"):
        resp = await client.request(method, "/files/any-bucket/any/key", headers=basic("root", PASSWORD))
        assert resp.status == 200


async def test_bearer_tokens(make_client):
    client, service = await make_client()
    await setup_alice(service, "files/docs:read,write")
    secret, token = await service.create_token("alice", scope=[Rule.parse("files/docs:read")])
    assert (await client.get("/files/files/docs/a", headers=bearer(secret))).status == 200
    assert (await client.put("/files/files/docs/a", headers=bearer(secret), data=b"x")).status == 403
    # The token as the Basic password (wget --password, curl -u alice:TOKEN).
    assert (await client.get("/files/files/docs/a", headers=basic("alice", secret))).status == 200
    assert (await client.get("/files/files/docs/a", headers=basic("bob", secret))).status == 401
    await service.revoke_token(token.id)
    resp = await client.get("/files/files/docs/a", headers=bearer(secret))
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="s3gate", error="invalid_token"')


async def test_foreign_or_malformed_authorization(make_client):
    client, _ = await make_client()
    resp = await client.get("/files/files/a", headers=bearer("ghp_notours"))
    assert resp.status == 401 and "s3g_" in (await resp.json())["message"]
    resp = await client.get("/files/files/a", headers={"Authorization": "Basic !!!"})
    assert resp.status == 401 and resp.headers["WWW-Authenticate"] == CHALLENGE
    resp = await client.get("/files/files/a", headers={"Authorization": "Digest x"})
    assert resp.status == 401


async def test_utf8_passwords(make_client):
    client, service = await make_client()
    await service.add_user("zoe", "pässwörd ünïcode ✓")
    await service.grant("zoe", Rule.parse("files:read"))
    assert (await client.get("/files/files/a", headers=basic("zoe", "pässwörd ünïcode ✓"))).status == 200


async def test_disabling_a_user_takes_effect_on_the_next_request(make_client):
    client, service = await make_client()
    await setup_alice(service, "files:read")
    assert (await client.get("/files/files/a", headers=basic("alice", PASSWORD))).status == 200  # now cached
    await service.store.set_flags((await service.store.get_user("alice")).id, disabled=True)  # as the CLI does
    assert (await client.get("/files/files/a", headers=basic("alice", PASSWORD))).status == 401


async def test_rules_apply_on_the_next_request(make_client):
    client, service = await make_client()
    await setup_alice(service)
    assert (await client.get("/files/files/a", headers=basic("alice", PASSWORD))).status == 403
    await service.grant("alice", Rule.parse("files:read"))
    assert (await client.get("/files/files/a", headers=basic("alice", PASSWORD))).status == 200


async def test_browser_navigation_goes_to_the_login_page(make_client):
    client, _ = await make_client()
    resp = await client.get(
        "/files/files/docs/a.txt?x=1", headers={"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}, allow_redirects=False
    )
    assert resp.status == 303
    location = URL(resp.headers["Location"])
    assert location.path == "/login" and location.query["next"] == "/files/files/docs/a.txt?x=1"
    # fetch() from a page, curl and wget get the 401.
    resp = await client.get("/files/files/docs/a.txt", headers={"Sec-Fetch-Mode": "cors", "Accept": "text/html"})
    assert resp.status == 401


async def test_whoami(make_client):
    client, service = await make_client()
    await setup_alice(service, "files/docs:read")
    body = await (await client.get("/api/whoami", headers=basic("alice", PASSWORD))).json()
    assert body["user"] == "alice" and body["via"] == "password"
    assert body["rules"] == [{"bucket": "files", "prefix": "docs/", "actions": "read"}]
    body = await (await client.get("/api/whoami")).json()
    assert body["user"] is None and body["via"] == "anonymous"


async def test_a_scope_refusal_names_the_token_not_the_owner(make_client):
    client, service = await make_client()
    await setup_alice(service, "files/docs:read,write")
    secret, _ = await service.create_token("alice", scope=[Rule.parse("files/docs:read")])
    resp = await client.put("/files/files/docs/a.txt", data=b"x", headers=bearer(secret))
    assert resp.status == 403
    message = (await resp.json())["message"]
    assert message == "this token's scope does not allow write on files/docs/a.txt (its owner alice may)"
    # Beyond the owner's own rights the refusal is about the owner, as before.
    resp = await client.put("/files/files/other/a.txt", data=b"x", headers=bearer(secret))
    assert (await resp.json())["message"] == "alice may not write files/other/a.txt"
