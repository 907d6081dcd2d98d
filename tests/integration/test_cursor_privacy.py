"""Against SeaweedFS, whose continuation token is the last key listed: cursors leak nothing (issue 7, item 4)."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from s3gate import keys
from s3gate.auth.rules import Rule

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


def _decoded(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


async def test_cursors_of_a_root_listing_do_not_name_hidden_keys(start_gateway, store, bucket):
    for key in ("docs/a.txt", "docs-private/x.txt", "docsx", "docs-private/y.txt", "zz/last.txt"):
        await store.put(bucket, key, b"1")
    gw = await start_gateway(auth=True, login_delay=0)
    service = gw.server.app[keys.AUTH]
    for name in ("alice", "bob"):
        await service.add_user(name, PASSWORD)
        await service.grant(name, Rule.parse(f"{bucket}/docs:read,list"))
    base = str(gw.server.make_url("/")).rstrip("/")
    alice = {"Authorization": aiohttp.encode_basic_auth("alice", PASSWORD)}
    bob = {"Authorization": aiohttp.encode_basic_auth("bob", PASSWORD)}
    seen, cursors, cursor = [], [], None
    async with aiohttp.ClientSession() as http:
        while True:
            params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
            async with http.get(f"{base}/files/{bucket}/", params=params, headers=alice) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            seen += [o["key"] for o in page["objects"]] + page["folders"]
            cursor = page["next_cursor"]
            if not cursor:
                break
            cursors.append(cursor)
        assert seen == ["docs/"]
        assert cursors, "SeaweedFS paged the listing: there were cursors to look at"
        for c in cursors:
            for hidden in (b"docs-private", b"docsx", b"zz"):
                assert hidden not in _decoded(c)
        # Another user with the same rights cannot replay alice's cursor.
        async with http.get(f"{base}/files/{bucket}/", params={"cursor": cursors[0]}, headers=bob) as resp:
            assert resp.status == 400
