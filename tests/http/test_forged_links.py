"""A signed-link query is credentials only on a download; anywhere else it is ignored.

The link principal stands for the link's signer before the signature is
checked against the object (the policy checks it at each access). The API
routes run no such check, so a forged ``?expires=1&by=admin&sig=x`` once made
the caller the admin there: /api/whoami told anyone a user's rules and role,
and /api/uploads handed out another user's upload grants.
The real gateway (create_app + moto).
"""

from __future__ import annotations

import pytest

from s3gate import keys
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from tests.http.test_cross_site import PASSWORD, gateway_settings  # noqa: F401  (fixture)

FORGED = {"expires": "4102444800", "by": "alice", "sig": "x"}


@pytest.fixture
async def gateway(aiohttp_client, gateway_settings, bucket):  # noqa: F811
    app = create_app(gateway_settings(link_mode="gateway"))
    client = await aiohttp_client(app)
    service = app[keys.AUTH]
    await service.add_user("alice", PASSWORD, admin=True)
    await service.grant("alice", Rule.parse(f"{bucket}:all"))
    return client


async def signed_in(client) -> None:
    resp = await client.post("/login", data={"username": "alice", "password": PASSWORD}, allow_redirects=False)
    assert resp.status == 303


async def test_a_forged_link_query_on_the_api_is_nobody(gateway, bucket, aiohttp_client):
    # Alice has an unfinished upload: its grant lets whoever holds it upload as her.
    owner = await aiohttp_client(gateway.server)
    await signed_in(owner)
    resp = await owner.post("/api/uploads", json={"bucket": bucket, "key": "big.bin", "size": 20 << 20, "name": "big.bin"})
    assert resp.status == 201, await resp.text()

    resp = await gateway.get("/api/whoami", params=FORGED)
    body = await resp.text()
    assert "alice" not in body and bucket not in body
    resp = await gateway.get("/api/uploads", params=FORGED)
    assert resp.status == 401 and "grant" not in await resp.text()
    resp = await gateway.get("/api/rights", params={"bucket": bucket, "prefix": "", **FORGED})
    assert not any((await resp.json())["here"].values())
    resp = await gateway.get("/metrics", params=FORGED)
    assert resp.status in (401, 404)


async def test_a_forged_link_query_on_a_download_is_refused(gateway, bucket, s3):
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"secret")
    resp = await gateway.get(f"/files/{bucket}/a.txt", params=FORGED)
    assert resp.status == 403 and await resp.read() != b"secret"
