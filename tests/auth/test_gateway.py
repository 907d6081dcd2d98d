"""The real gateway (create_app + moto) with auth on: the seed's commands with curl -u, filtered listings, links."""

import asyncio
import json

import pytest

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.app import create_app
from s3gate.auth.rules import Rule
from s3gate.http.links import LinkSigner

from .conftest import PASSWORD


async def sh(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode, out.decode()


@pytest.fixture
async def gateway(aiohttp_server, tmp_path, moto_endpoint, bucket):
    settings = settings_mod.load(
        environ={}, use_file=False, auth=True, login_delay=0, link_mode="gateway",
        s3_endpoint=moto_endpoint, s3_access_key="testing", s3_secret_key="testing",
        data_dir=str(tmp_path / "data"),
    )
    app = create_app(settings)
    server = await aiohttp_server(app, host="127.0.0.1", port=0)
    service = app[keys.AUTH]
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse(f"{bucket}/docs:read,list,write,delete"))
    server.base = f"http://127.0.0.1:{server.port}"
    server.service = service
    return server


CURL = ("curl", "--silent", "--show-error", "--max-time", "20")


async def test_seed_commands_need_credentials(gateway, bucket, s3):
    s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"hello")
    code, out = await sh(*CURL, "-o", "/dev/null", "-w", "%{http_code}", f"{gateway.base}/listfiles/{bucket}/")
    assert out == "401"
    code, out = await sh(*CURL, "-D", "-", "-o", "/dev/null", f"{gateway.base}/downloads3/{bucket}/docs/a.txt")
    assert 'www-authenticate: basic realm="s3gate"' in out.lower()


async def test_listing_and_download_with_curl_u(gateway, bucket, s3, tmp_path):
    for key in ("docs/a.txt", "docs/sub/b.txt", "docs-private/secret.txt", "readme.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    # The seed's listing needs list on the bucket root; alice has docs/ only: she sees only docs/.
    code, out = await sh(*CURL, "--fail", "-u", f"alice:{PASSWORD}", f"{gateway.base}/listfiles/{bucket}/")
    assert code == 0, out
    assert [o["key"] for o in json.loads(out)] == ["docs/a.txt", "docs/sub/b.txt"]
    code, out = await sh(*CURL, "--fail", "-u", f"alice:{PASSWORD}", f"{gateway.base}/files/{bucket}/")
    assert code == 0, out
    body = json.loads(out)
    assert body["folders"] == ["docs/"] and body["objects"] == []
    # /downloads3/ prints a gateway-signed link; following it needs no credentials.
    code, link = await sh(*CURL, "--fail", "-u", f"alice:{PASSWORD}", f"{gateway.base}/downloads3/{bucket}/docs/a.txt")
    assert code == 0 and "sig=" in link and "by=alice" in link
    code, out = await sh(*CURL, "--fail", link.strip())
    assert code == 0 and out == "docs/a.txt"
    code, out = await sh(*CURL, "-o", "/dev/null", "-w", "%{http_code}", "-u", f"alice:{PASSWORD}",
                         f"{gateway.base}/downloads3/{bucket}/docs-private/secret.txt")
    assert out == "403"


async def test_upload_and_delete_with_curl_u(gateway, bucket, s3, tmp_path):
    f = tmp_path / "note.txt"
    f.write_bytes(b"note")
    code, out = await sh(*CURL, "--fail", "-u", f"alice:{PASSWORD}", "-T", str(f), f"{gateway.base}/files/{bucket}/docs/note.txt")
    assert code == 0, out
    assert s3.get_object(Bucket=bucket, Key="docs/note.txt")["Body"].read() == b"note"
    code, out = await sh(*CURL, "-o", "/dev/null", "-w", "%{http_code}", "-u", f"alice:{PASSWORD}", "-T", str(f),
                         f"{gateway.base}/files/{bucket}/docs-private/note.txt")
    assert out == "403"
    code, out = await sh(*CURL, "--fail", "-u", f"alice:{PASSWORD}", f"{gateway.base}/deletefile/{bucket}/docs/note.txt")
    assert code == 0 and "deleted docs/note.txt" in out


async def test_a_bucket_opened_to_everyone_works_as_typed(gateway, bucket, s3, tmp_path):
    await gateway.service.grant("*", Rule.parse(f"{bucket}:all"))
    f = tmp_path / "report.pdf"
    f.write_bytes(b"%PDF-1.4 hello")
    code, out = await sh(*CURL, "--fail", "-F", f"file=@{f}", f"{gateway.base}/uploads3/{bucket}")
    assert code == 0 and out.startswith("uploaded report.pdf"), out
    code, out = await sh(*CURL, "--fail", f"{gateway.base}/listfiles/{bucket}/")
    assert [o["key"] for o in json.loads(out)] == ["report.pdf"]
    code, out = await sh(*CURL, "--fail", "-L", f"{gateway.base}/downloads3/{bucket}/report.pdf")
    assert out == "%PDF-1.4 hello"
    code, out = await sh(*CURL, "--fail", f"{gateway.base}/deletefile/{bucket}/report.pdf")
    assert code == 0


async def test_wget_through_the_gateway(gateway, bucket, s3):
    s3.put_object(Bucket=bucket, Key="docs/w.txt", Body=b"wget me")
    code, out = await sh("wget", "-q", "-O", "-", "--user", "alice", "--password", PASSWORD,
                         f"{gateway.base}/files/{bucket}/docs/w.txt")
    assert code == 0 and out == "wget me"


async def test_a_link_is_verified_once_per_request(gateway, bucket, s3, monkeypatch):
    # The download handler and the auth policy both ask for the link's check
    # (s3gate.http.links.verify_request); the signature is computed once.
    s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"hello")
    calls = []
    real = LinkSigner.verify
    monkeypatch.setattr(LinkSigner, "verify", lambda self, *a, **kw: calls.append(a[:2]) or real(self, *a, **kw))
    code, link = await sh(*CURL, "--fail", "-u", f"alice:{PASSWORD}", f"{gateway.base}/downloads3/{bucket}/docs/a.txt")
    assert code == 0, link
    code, out = await sh(*CURL, "--fail", link.strip())
    assert code == 0 and out == "hello"
    assert calls == [(bucket, "docs/a.txt")]
    code, out = await sh(*CURL, "-o", "/dev/null", "-w", "%{http_code}", link.strip().replace("sig=", "sig=A"))
    assert out == "403"
