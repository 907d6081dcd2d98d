"""Real gunicorn, two workers: a client proven on one worker is not refused by the other while its name is locked."""

import asyncio
import base64
import sys
from pathlib import Path

import psutil
import pytest

from .helpers import read_response, request_head
from .test_processes import child_env, processes, start_gunicorn  # noqa: F401 (processes: a fixture)

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery"


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


class Conn:
    def __init__(self, reader, writer, port):
        self.reader, self.writer, self.port = reader, writer, port

    async def get(self, auth: str, addr: str) -> int:
        headers = {"Authorization": auth, "X-Forwarded-For": addr}
        self.writer.write(request_head("GET", "/api/whoami", self.port, headers))
        await self.writer.drain()
        status, _, _ = await read_response(self.reader)
        return status


def owner(workers: list[int], port: int, local_port: int) -> int | None:
    """Which worker accepted our connection (its socket has our port as the remote end)."""
    for pid in workers:
        for c in psutil.Process(pid).net_connections(kind="tcp"):
            if c.laddr and c.laddr.port == port and c.raddr and c.raddr.port == local_port:
                return pid
    return None


async def connection_to_each_worker(gw) -> dict[int, Conn]:
    found: dict[int, Conn] = {}
    spare = []
    for _ in range(200):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        conn = Conn(reader, writer, gw.port)
        await conn.get("Bearer s3g_not_a_token", "192.0.2.250")  # answered: the worker has accepted it
        pid = owner(gw.children, gw.port, writer.get_extra_info("sockname")[1])
        if pid is not None and pid not in found:
            found[pid] = conn
        else:
            spare.append(writer)
        if len(found) == len(gw.children):
            break
    for w in spare:
        w.close()
    assert len(found) == len(gw.children), "could not reach every worker"
    return found


async def test_a_proven_client_passes_on_every_worker_while_its_name_is_locked(processes, seaweed, tmp_path):  # noqa: F811
    gw = await start_gunicorn(
        processes, seaweed, tmp_path, workers=2,
        S3GATE_AUTH="1", S3GATE_TRUSTED_PROXIES="127.0.0.1", S3GATE_LOGIN_DELAY="0", S3GATE_LOGIN_MAX_FAILURES="2",
    )  # fmt: skip
    env = child_env(S3GATE_DATA_DIR=str(tmp_path / "gateway-data"))
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "s3gate"), "users", "add", "alice", "--password-stdin",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate((PASSWORD + "\n").encode()), 60)
    assert proc.returncode == 0, out

    conns = await connection_to_each_worker(gw)
    first, second = conns.values()
    right, client, attacker = basic("alice", PASSWORD), "192.0.2.10", "203.0.113.66"
    assert await first.get(right, client) == 200  # proven on the first worker only
    assert [await first.get(basic("alice", f"guess {i} wrong"), attacker) for i in range(3)] == [401, 401, 429]
    # The other worker never verified this password itself; it shares the proof through the users database.
    assert await second.get(right, client) == 200
    assert await first.get(right, client) == 200
    assert await second.get(right, "192.0.2.11") == 429  # an unproven address stays locked out
    for c in conns.values():
        c.writer.close()
