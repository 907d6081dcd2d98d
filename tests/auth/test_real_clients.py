"""curl and wget against a real server on 127.0.0.1: Basic, tokens, cookie sessions, 401/403/429."""

import asyncio
import json
import shutil

import pytest

from s3gate import keys
from s3gate.auth.rules import Rule

from .conftest import PASSWORD, build_app, make_settings

pytestmark = pytest.mark.skipif(not (shutil.which("curl") and shutil.which("wget")), reason="needs curl and wget")


async def run(*argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=30)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def server(aiohttp_server, tmp_path, clock):
    app = build_app(make_settings(tmp_path, login_delay=0, login_max_failures=3), clock)
    srv = await aiohttp_server(app, host="127.0.0.1", port=0)
    service = app[keys.AUTH]
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse("files/docs:read,list,write"))
    srv.service = service
    srv.base = f"http://127.0.0.1:{srv.port}"
    return srv


CURL = ("curl", "--silent", "--show-error", "--max-time", "20")


async def test_curl_basic(server):
    code, out, err = await run(*CURL, "-u", f"alice:{PASSWORD}", f"{server.base}/files/files/docs/a.txt")
    assert code == 0, err
    assert json.loads(out)["user"] == "alice"
    code, out, _ = await run(*CURL, "-u", f"alice:{PASSWORD}", "-o", "/dev/null", "-w", "%{http_code}",
                             f"{server.base}/files/files/docs-private/a.txt")
    assert out == "403"


async def test_curl_upload_with_credentials(server, tmp_path):
    f = tmp_path / "report.pdf"
    f.write_bytes(b"%PDF-1.4 hello")
    code, out, err = await run(*CURL, "--fail", "-u", f"alice:{PASSWORD}", "-T", str(f), f"{server.base}/files/files/docs/report.pdf")
    assert code == 0, err
    assert json.loads(out)["action"] == "write"


async def test_curl_without_or_with_wrong_credentials(server):
    code, out, _ = await run(*CURL, "-D", "-", "-o", "/dev/null", f"{server.base}/files/files/docs/a.txt")
    assert out.startswith("HTTP/1.1 401")
    assert 'www-authenticate: basic realm="s3gate"' in out.lower()
    code, out, _ = await run(*CURL, "--fail", "-u", "alice:not-the-password", f"{server.base}/files/files/docs/a.txt")
    assert code == 22  # curl's "HTTP error" exit code


async def test_curl_is_throttled(server):
    for _ in range(3):
        await run(*CURL, "-u", "alice:guess-guess-guess", f"{server.base}/files/files/docs/a.txt")
    code, out, _ = await run(*CURL, "-D", "-", "-o", "/dev/null", "-u", f"alice:{PASSWORD}", f"{server.base}/files/files/docs/a.txt")
    assert out.startswith("HTTP/1.1 429")
    assert "retry-after: 900" in out.lower()


async def test_wget_user_and_password(server, tmp_path):
    code, out, err = await run("wget", "-q", "-O", "-", "--user", "alice", "--password", PASSWORD,
                               f"{server.base}/files/files/docs/a.txt")
    assert code == 0, err
    assert json.loads(out)["user"] == "alice"
    code, _, _ = await run("wget", "-q", "-O", "-", "--user", "alice", "--password", "not-the-password",
                           f"{server.base}/files/files/docs/a.txt")
    assert code == 6  # wget: "username/password authentication failure"
    code, _, _ = await run("wget", "-q", "-O", "-", f"{server.base}/files/files/docs/a.txt")
    assert code == 6


async def test_wget_ask_password_reads_it_from_the_terminal_or_stdin(server):
    # --ask-password prompts on the terminal; with no terminal wget reads the line from stdin.
    code, out, err = await run("wget", "-q", "-O", "-", "--user", "alice", "--ask-password",
                               f"{server.base}/files/files/docs/a.txt", stdin=(PASSWORD + "\n").encode())
    if code != 0 and "terminal" in err.lower():
        pytest.skip("this wget insists on a terminal")
    assert code == 0, err
    assert json.loads(out)["user"] == "alice"


async def test_tokens_with_curl_and_wget(server):
    secret, token = await server.service.create_token("alice", scope=[Rule.parse("files/docs:read")])
    url = f"{server.base}/files/files/docs/a.txt"
    code, out, err = await run(*CURL, "--fail", "-H", f"Authorization: Bearer {secret}", url)
    assert code == 0, err
    assert json.loads(out)["user"] == "alice"
    code, out, err = await run(*CURL, "--fail", "-u", f"alice:{secret}", url)
    assert code == 0, err
    code, out, err = await run("wget", "-q", "-O", "-", "--header", f"Authorization: Bearer {secret}", url)
    assert code == 0, err
    code, out, _ = await run(*CURL, "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-d", "x",
                             "-H", f"Authorization: Bearer {secret}", url)
    assert out == "403"  # the scope is read-only though alice may write
    await server.service.revoke_token(token.id)
    code, out, _ = await run(*CURL, "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Authorization: Bearer {secret}", url)
    assert out == "401"


async def test_curl_cookie_session(server, tmp_path):
    jar = str(tmp_path / "cookies.txt")
    code, out, err = await run(*CURL, "-c", jar, "-o", "/dev/null", "-w", "%{http_code}",
                               "--data-urlencode", "username=alice", "--data-urlencode", f"password={PASSWORD}",
                               f"{server.base}/login")
    assert out == "303", err
    jar_text = open(jar).read()
    assert "#HttpOnly_127.0.0.1" in jar_text and "s3gate_session" in jar_text
    code, out, _ = await run(*CURL, "--fail", "-b", jar, f"{server.base}/files/files/docs/a.txt")
    assert code == 0 and json.loads(out)["user"] == "alice"
    stolen = str(tmp_path / "copy-of-cookies.txt")
    shutil.copy(jar, stolen)
    code, out, _ = await run(*CURL, "-b", jar, "-c", jar, "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}", f"{server.base}/logout")
    assert out == "303"
    assert "s3gate_session" not in open(jar).read()  # the browser's copy is cleared...
    code, out, _ = await run(*CURL, "-o", "/dev/null", "-w", "%{http_code}", "-b", stolen, f"{server.base}/files/files/docs/a.txt")
    assert out == "401"  # ...and any other copy is dead on the server
