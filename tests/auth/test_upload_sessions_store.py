"""The users store's upload sessions (migration 4): the rows resumable uploads keep."""

from __future__ import annotations

from s3gate.auth.sql import open_store
from s3gate.auth.store import UploadSession

TIB = 1024**4


def session(sid: str, user_id: int | None, expires_at: float, size: int = 5 * TIB) -> UploadSession:
    return UploadSession(
        sid, user_id, "b", f"k/{sid}", size, 64 << 20, f"up-{sid}", f"{sid}.bin", 1.5, 10.0, expires_at
    )


async def test_upload_sessions_round_trip(tmp_path):
    store = await open_store(tmp_path, "users.db")
    try:
        alice = await store.create_user("alice", None, False, 1.0)
        mine = session("a" * 20, alice.id, 100.0)
        anon = session("b" * 20, None, 50.0, size=123)
        for s in (mine, anon):
            await store.create_upload_session(s)
        assert await store.get_upload_session(mine.id) == mine  # 5 TiB comes back exact
        assert await store.get_upload_session("nope" * 5) is None
        assert await store.list_upload_sessions(alice.id) == [mine]
        assert await store.list_upload_sessions(None) == [anon]
        assert await store.expired_upload_sessions(50.0) == [anon]
        assert await store.expired_upload_sessions(100.0) == [anon, mine]
        assert await store.delete_upload_session(anon.id) is True
        assert await store.delete_upload_session(anon.id) is False
        await store.delete_user(alice.id)  # a user's sessions go with them
        assert await store.get_upload_session(mine.id) is None
    finally:
        await store.close()
