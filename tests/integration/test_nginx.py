"""Behind a real nginx with TLS, configured as README's Deployment section says.

Checks what only a real front proxy shows: uploads stream through it without
being spooled to disk, HTTP/2 and HTTP/1.1 both work, the port-80 redirect
keeps PUT, links and cookies know they are on https.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from s3gate import keys
from s3gate.auth.rules import Rule
from s3gate.embedded import free_port
from tests.integration.conftest import MiB, random_bytes, run, sha256

pytestmark = pytest.mark.integration

NGINX_CONF = """
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{http_port};
        return 308 https://$host:{https_port}$request_uri;
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl http2;
        ssl_certificate {root}/cert.pem;
        ssl_certificate_key {root}/key.pem;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def behind_nginx(start_gateway, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is needed (apt-get install nginx; .ci/run does it)"
    gateway = await start_gateway(trust_forwarded=True, auth=True, login_delay=0)
    service = gateway.app[keys.AUTH]
    await service.add_user("alice", PASSWORD)
    root = tmp_path / "nginx"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / sub).mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(root / "key.pem"), "-out", str(root / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    http_port, https_port = free_port(), free_port()
    (root / "nginx.conf").write_text(
        NGINX_CONF.format(root=root, http_port=http_port, https_port=https_port, upstream=gateway.port)
    )
    proc = await asyncio.create_subprocess_exec(
        nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        probe = await run("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"https://127.0.0.1:{https_port}/healthz")
        if probe.text == "200":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError((root / "error.log").read_text())
    gateway.service = service
    gateway.https = f"https://127.0.0.1:{https_port}"
    gateway.http = f"http://127.0.0.1:{http_port}"
    gateway.nginx_root = root
    yield gateway
    proc.terminate()
    await proc.wait()


async def test_upload_and_download_over_https_http11_and_http2(behind_nginx, bucket, tmp_path):
    gw = behind_nginx
    await gw.service.grant("alice", Rule.parse(f"{bucket}:read,list,write,delete"))
    src = tmp_path / "big.bin"
    src.write_bytes(random_bytes(24 * MiB))
    user = f"alice:{PASSWORD}"
    for version, key in (("--http1.1", "h1.bin"), ("--http2", "h2.bin")):
        up = await run("curl", "-sSk", "--fail", version, "-u", user, "-T", src, f"{gw.https}/files/{bucket}/{key}")
        assert up.rc == 0, up.errtext
        assert sha256(src.read_bytes()) in up.text
        down = await run("curl", "-sSk", "--fail", version, "-u", user, f"{gw.https}/files/{bucket}/{key}")
        assert sha256(down.out) == sha256(src.read_bytes())
    # Streamed, not spooled: nginx never wrote a request body to disk.
    assert "buffered to a temporary file" not in (gw.nginx_root / "error.log").read_text()
    # A chunked body of unknown length streams too.
    piped = await run("curl", "-sSk", "--fail", "-u", user, "-T", "-", f"{gw.https}/files/{bucket}/piped.bin", input=src.read_bytes())
    assert piped.rc == 0 and sha256(src.read_bytes()) in piped.text


async def test_port_80_redirect_keeps_put(behind_nginx, bucket, tmp_path):
    gw = behind_nginx
    await gw.service.grant("alice", Rule.parse(f"{bucket}:read,write"))
    src = tmp_path / "via-80.txt"
    src.write_bytes(b"hello over 80")
    up = await run(
        "curl", "-sSk", "--fail", "-L", "-u", f"alice:{PASSWORD}", "--location-trusted",
        "-T", src, f"{gw.http}/files/{bucket}/via-80.txt",
    )  # fmt: skip
    assert up.rc == 0, up.errtext
    down = await run("curl", "-sSk", "--fail", "-u", f"alice:{PASSWORD}", f"{gw.https}/files/{bucket}/via-80.txt")
    assert down.out == b"hello over 80"


async def test_https_links_and_secure_session_cookie(behind_nginx, bucket, store, tmp_path):
    gw = behind_nginx
    await gw.service.grant("alice", Rule.parse(f"{bucket}:read"))
    await store.put(bucket, "doc.txt", b"signed")
    link = await run("curl", "-sSk", "-u", f"alice:{PASSWORD}", f"{gw.https}/downloads3/{bucket}/doc.txt")
    url = link.text.strip()
    assert url.startswith(f"{gw.https}/files/{bucket}/doc.txt?"), url  # the scheme and host clients used
    fetched = await run("curl", "-sSk", "--fail", url)
    assert fetched.out == b"signed"

    jar = tmp_path / "jar.txt"
    login = await run(
        "curl", "-sSk", "-c", jar, "-o", "/dev/null", "-w", "%{http_code}",
        "-H", f"Origin: {gw.https}", "--data-urlencode", "username=alice",
        "--data-urlencode", f"password={PASSWORD}", f"{gw.https}/login",
    )  # fmt: skip
    assert login.text in ("302", "303"), login.text
    cookie_lines = [line for line in jar.read_text().splitlines() if "s3gate_session" in line]
    assert cookie_lines, jar.read_text()
    # Netscape cookie file: field 4 is "secure" (TRUE/FALSE); HttpOnly cookies are prefixed.
    fields = cookie_lines[0].split("\t")
    assert fields[0].startswith("#HttpOnly_") and fields[3] == "TRUE", cookie_lines[0]
