"""The README's commands, read from the README itself and run (issue 11), so the guide
cannot drift from the program.

- Every ```sh block under "Using it from the console" runs with `bash -e` against a real
  gateway (SeaweedFS, authentication on), in README order, in one scratch directory:
  HOST, BUCKET and KEY filled in, `./run.sh` pointed at the gateway's data directory,
  and curl's/wget's password prompts answered with alice's token.
- The deployment's gunicorn command runs as printed, from the checkout, with only the
  store's placeholders filled in; without a store it stops at once with one line.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests/integration/conftest.py)
from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from s3gate.embedded import free_port
from tests.integration.conftest import (  # the integration fixtures, used here too
    bucket,  # noqa: F401
    gateway_settings,  # noqa: F401
    seaweed,  # noqa: F401
    start_gateway,  # noqa: F401
    store,  # noqa: F401
)
from tests.integration.helpers import eventually, run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

# Every heading holding a ```sh block is either run here or named below with the reason.
RUN = {"Using it from the console"}  # a "## " chapter: all its "### " sections
NOT_RUN = {
    "Two commands": "starts the server and the whole test suite",
    "Users and permissions": "needs an interactive password prompt (a TTY) and users that do not exist",
    "Deploying": "sudo, nginx, certbot, systemd; its gunicorn block runs in test_gunicorn_command_as_printed",
    "Scaling out": "sudo, PostgreSQL, several machines; tests/integration/test_cluster.py runs such a cluster",
}


def sh_blocks() -> list[tuple[str, str, str]]:
    """(chapter, section, code) for every ```sh block, in README order."""
    chapter = section = ""
    out, code = [], None
    for line in README.read_text().splitlines():
        if code is not None:
            if line.strip() == "```":
                out.append((chapter, section, "\n".join(code)))
                code = None
            else:
                code.append(line)
        elif line.startswith("## "):
            chapter, section = line[3:].strip(), ""
        elif line.startswith("### "):
            section = line[4:].strip()
        elif line.strip() == "```sh":
            code = []
    return out


def test_every_sh_block_is_run_or_named():
    chapters = {chapter for chapter, _, _ in sh_blocks()}
    assert chapters <= RUN | set(NOT_RUN), chapters - RUN - set(NOT_RUN)
    assert chapters & RUN == RUN


def console_script(code: str, port: int, bucket: str) -> str:
    code = code.replace("http://HOST/files/files/", f"http://HOST/files/{bucket}/")
    code = re.sub(r"(users (?:grant|revoke) \S+ )files\b", rf"\g<1>{bucket}", code)
    code = code.replace("HOST", f"127.0.0.1:{port}").replace("BUCKET", bucket)
    code = code.replace("/KEY", "/hello.txt").replace("/path/to/file", "hello.txt")
    # Prompts need a TTY: the password comes on standard input, and alice's token
    # answers curl's and wget's password prompts (a token also works as the password).
    code = code.replace("./run.sh users add alice", "./run.sh users add alice --password-stdin")
    code = code.replace("./run.sh ", '"$S3GATE" ')
    code = re.sub(r"-u alice(?=\s)", '-u alice:"$TOKEN"', code)
    code = code.replace("--user alice --ask-password", '--user alice --password "$TOKEN"')
    code = code.replace("s3g_...", '"$TOKEN"')
    return f'{code}\nif [ -n "${{TOKEN:-}}" ]; then printf %s "$TOKEN" > "$KEEP/token"; fi\n'


def make_inputs(work: Path) -> None:
    (work / "hello.txt").write_text("hello\n")
    for name in ("a.txt", "b.txt", "c.txt"):
        (work / name).write_text(f"{name}\n")
    (work / "big.iso").write_bytes(secrets.token_bytes(11_000_000))  # 3 parts in "Resumable uploads"
    (work / "report.pdf").write_bytes(b"%PDF-1.4 not really\n")
    (work / "photos" / "2026").mkdir(parents=True)
    (work / "photos" / "cat.jpg").write_bytes(secrets.token_bytes(5000))
    (work / "photos" / "2026" / "dog.jpg").write_bytes(secrets.token_bytes(7000))
    subprocess.run(["tar", "czf", "photos.tar.gz", "photos"], cwd=work, check=True)


async def test_console_recipes_run_as_printed(start_gateway, store, bucket, tmp_path):
    gw = await start_gateway(auth=True, login_delay=0)
    port = gw.server.port
    await store.put(bucket, "hello.txt", b"hello\n")
    work, keep = tmp_path / "work", tmp_path / "keep"
    work.mkdir()
    keep.mkdir()
    make_inputs(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3GATE_")}
    env.update(S3GATE=str(BIN / "s3gate"), S3GATE_DATA_DIR=gw.settings.data_dir, KEEP=str(keep))
    password = secrets.token_urlsafe(18)
    blocks = [(section, code) for chapter, section, code in sh_blocks() if chapter in RUN]
    assert len(blocks) >= 8, blocks
    for i, (section, code) in enumerate(blocks):
        script = console_script(code, port, bucket)
        if (keep / "token").exists():
            env["TOKEN"] = (keep / "token").read_text()
        res = await run(
            "bash", "-e", "-o", "pipefail", "-c", script, input=f"{password}\n".encode(), cwd=work, env=env, timeout=120
        )
        assert res.rc == 0, f"block {i} of {section!r} failed ({res.rc}):\n{script}\n{res.errtext}"
        assert "TOKEN" in env or (keep / "token").exists(), "the first block makes alice's token"
    # A few effects in S3.
    keys = set(await store.keys(bucket))
    assert {"isos/big.iso", "isos/latest.iso", "photos.tar", "reports/2026/q3/report.pdf"} <= keys, keys
    assert {"inbox/a.txt", "inbox/b.txt", "inbox/c.txt", "backup/photos/cat.jpg"} <= keys, keys
    assert "hello.txt" not in keys  # the seed's delete
    assert not [k for k in keys if k.startswith("photos/")], keys  # the recursive delete
    assert await store.get(bucket, "isos/big.iso") == (work / "big.iso").read_bytes()
    assert await store.get(bucket, "videos/big.iso") == (work / "big.iso").read_bytes()  # resumable, in parts


# -- the deployment's gunicorn command ---------------------------------------------------
def gunicorn_block() -> str:
    found = [code for chapter, _, code in sh_blocks() if chapter == "Deploying" and "gunicorn" in code]
    assert len(found) == 1, found
    return found[0]


def deployment_script(seaweed, data_dir: Path, port: int, *, endpoint: bool = True) -> str:
    code = gunicorn_block()
    assert ".venv/bin/gunicorn s3gate.app:app_factory" in code  # as a newcomer has it: in .venv
    code = code.replace("https://s3.example.org", seaweed.endpoint)
    code = code.replace("=KEY", f"={seaweed.credentials.access_key}").replace(
        "=SECRET", f"={seaweed.credentials.secret_key}"
    )
    code = code.replace('"$PWD/data"', str(data_dir)).replace("127.0.0.1:5000", f"127.0.0.1:{port}")
    if not endpoint:
        code = code.replace(f"S3GATE_S3_ENDPOINT={seaweed.endpoint}", "S3GATE_S3_REGION=us-east-1")
    return code


def start_printed(script: str, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3GATE_")}
    with open(log, "wb") as out:
        # Its own session: bash and gunicorn are stopped together, by this group's id.
        return subprocess.Popen(
            ["bash", "-e", "-c", script], cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )


async def test_gunicorn_command_as_printed(seaweed, tmp_path):
    port, data_dir, log = free_port(), tmp_path / "data", tmp_path / "gunicorn.log"
    proc = start_printed(deployment_script(seaweed, data_dir, port), log)
    try:

        async def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            res = await run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/readyz")
            return res.text == "200"

        await eventually(ready, 60, "the printed gunicorn command to serve")
        anon = await run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/files/")
        assert anon.text == "401"
        assert "no users database at" in log.read_text()  # said, not silent
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)


def test_gunicorn_without_a_store_stops_with_one_line(seaweed, tmp_path):
    log = tmp_path / "gunicorn.log"
    proc = start_printed(deployment_script(seaweed, tmp_path / "data", free_port(), endpoint=False), log)
    try:
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert rc != 0, text
    assert "s3gate: no S3 store: set S3GATE_S3_ENDPOINT" in text, text
    assert "Traceback" not in text, text
    # Refused by the arbiter before any worker (workers failing together can make gunicorn print a traceback).
    assert "Booting worker" not in text and text.count("s3gate: no S3 store") == 1, text
    assert not (tmp_path / "data").exists()
