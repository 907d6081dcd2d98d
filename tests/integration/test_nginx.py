"""Behind a real nginx with TLS, configured by the site file we ship.

The test renders ``config/nginx/s3gate.conf`` itself (only the values a
deployer changes: ports, certificate, upstream, webroot, server name) and runs
Debian's nginx with it, so what a deployer copies is what is tested. Checks what
only a real front proxy shows: uploads stream through it without being spooled
to disk, HTTP/2 and HTTP/1.1 both work, the port-80 redirect keeps PUT while
certbot's challenge files are served over port 80, links and cookies know they
are on https, and the gateway's own refusals reach the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from s3gate import keys
from s3gate.auth.rules import Rule
from s3gate.certs import self_signed
from s3gate.embedded import free_port
from s3gate.private import write_private
from tests.integration.helpers import MiB, random_bytes, run, sha256

pytestmark = pytest.mark.integration

SITE = Path(__file__).resolve().parents[2] / "config" / "nginx" / "s3gate.conf"
DEBIAN_MAIN = Path("/etc/nginx/nginx.conf")

# The test-only main configuration around the site: everything nginx writes
# stays in ROOT (Debian's defaults point at /var/lib/nginx and /var/log/nginx).
MAIN_CONF = """\
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{}}
http {{
    access_log off;
    gzip on;  # as in Debian's nginx.conf: the site must turn it off for its files
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {site};
}}
"""

PASSWORD = "correct horse battery staple"


def render(path: Path, replacements: list[tuple[str, str, int]]) -> str:
    """PATH's text with each (shipped text, test text, how often it occurs) replaced; a marker not found fails."""
    text = path.read_text()
    for old, new, times in replacements:
        found = text.count(old)
        assert found == times, f"{path}: expected {old!r} {times}x, found {found}x; update the test with the file"
        text = text.replace(old, new)
    return text


def loopback(http_port: int, https_port: int) -> list[tuple[str, str, int]]:
    """The site's ports 80 and 443 (IPv4 and IPv6 wildcards) as two free ports on 127.0.0.1."""
    return [
        ("listen 80;", f"listen 127.0.0.1:{http_port};", 1),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1),
        ("listen [::]:80;", "", 1),
        ("listen [::]:443 ssl http2;", "", 1),
    ]


def certificate(root: Path) -> list[tuple[str, str, int]]:
    """ROOT/cert.pem and key.pem from `s3gate cert self-signed`'s code (127.0.0.1 in its SAN, so
    clients can check it with --cacert), and the site's certificate paths pointing at them."""
    cert, key = self_signed(["127.0.0.1"], days=1)
    (root / "cert.pem").write_bytes(cert)
    write_private(root / "key.pem", key)
    return [
        (
            "ssl_certificate     /etc/letsencrypt/live/files.example.org/fullchain.pem;",
            f"ssl_certificate {root}/cert.pem;",
            1,
        ),
        (
            "ssl_certificate_key /etc/letsencrypt/live/files.example.org/privkey.pem;",
            f"ssl_certificate_key {root}/key.pem;",
            1,
        ),
    ]


def write_config(root: Path, upstream: int | list[int]) -> tuple[int, int]:
    """ROOT/nginx.conf: the shipped site on two free loopback ports (returned: http, https) in front of
    127.0.0.1:UPSTREAM (several ports: one upstream of several servers, round-robin), with its certificate
    (ROOT/cert.pem), temp dirs and certbot's webroot in ROOT.
    Run it with `nginx -p ROOT -c ROOT/nginx.conf -g 'daemon off;'` (also bench/tls.py, bench/cluster.py)."""
    ports = [upstream] if isinstance(upstream, int) else upstream
    servers = "\n    ".join(f"server 127.0.0.1:{port};" for port in ports)
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "webroot"):
        (root / sub).mkdir(parents=True)
    http_port, https_port = free_port(), free_port()
    site = render(
        SITE,
        [
            *loopback(http_port, https_port),
            ("return 308 https://$host$request_uri;", f"return 308 https://$host:{https_port}$request_uri;", 1),
            ("server_name files.example.org;", "server_name 127.0.0.1;", 2),
            ("root /var/www/html;", f"root {root}/webroot;", 1),
            ("server 127.0.0.1:5000;", servers, 1),
            *certificate(root),
        ],
    )
    (root / "s3gate.conf").write_text(site)
    # As root, nginx's workers would run as nobody, who cannot read pytest's 0700 temp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(MAIN_CONF.format(root=root, user=user, site=root / "s3gate.conf"))
    return http_port, https_port


def nginx_binary() -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is needed (apt-get install nginx; ./run.sh test installs it)"
    return nginx


@dataclass
class Nginx:
    root: Path  # its prefix: config, logs, temp dirs, certificate, certbot's webroot
    http: str
    https: str


@pytest.fixture
async def start_nginx(tmp_path):
    """Start Debian's nginx with the shipped site, proxying to 127.0.0.1:UPSTREAM."""
    procs: list[asyncio.subprocess.Process] = []

    async def start(upstream: int) -> Nginx:
        root = tmp_path / f"nginx-{len(procs)}"
        # Off the loop: the gateway under test runs on it (and blockbuster watches s3gate's file writes there).
        http_port, https_port = await asyncio.to_thread(write_config, root, upstream)
        with open(root / "stderr.log", "wb") as stderr:  # what nginx says before its error_log is open
            proc = await asyncio.create_subprocess_exec(
                nginx_binary(), "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;",
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        procs.append(proc)
        https = f"https://127.0.0.1:{https_port}"
        for _ in range(100):
            probe = await run("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"{https}/healthz")
            if probe.text == "200" or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        logs = [root / "stderr.log", root / "error.log"]
        assert probe.text == "200" and proc.returncode is None, "\n".join(p.read_text() for p in logs if p.exists())
        return Nginx(root, f"http://127.0.0.1:{http_port}", https)

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


@pytest.fixture
async def behind_nginx(start_gateway, start_nginx):
    return await gateway_behind_nginx(start_gateway, start_nginx)


async def gateway_behind_nginx(start_gateway, start_nginx, **settings):
    gateway = await start_gateway(trusted_proxies="127.0.0.1", auth=True, login_delay=0, **settings)
    service = gateway.app[keys.AUTH]
    await service.add_user("alice", PASSWORD)
    nginx = await start_nginx(gateway.port)
    gateway.service = service
    gateway.https = nginx.https
    gateway.http = nginx.http
    gateway.nginx_root = nginx.root
    return gateway


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
    piped = await run(
        "curl", "-sSk", "--fail", "-u", user, "-T", "-", f"{gw.https}/files/{bucket}/piped.bin", input=src.read_bytes()
    )
    assert piped.rc == 0 and sha256(src.read_bytes()) in piped.text
    assert "buffered to a temporary file" not in (gw.nginx_root / "error.log").read_text()


async def test_download_relayed_byte_for_byte(behind_nginx, bucket, store):
    gw = behind_nginx
    await gw.service.grant("alice", Rule.parse(f"{bucket}:read"))
    page = b"<html>" + b"<p>compressible</p>" * 5000 + b"</html>"
    await store.put(bucket, "page.html", page, ContentType="text/html")
    got = await run(
        "curl", "-sSk", "--fail", "-D", "-", "-H", "Accept-Encoding: gzip", "-u", f"alice:{PASSWORD}",
        f"{gw.https}/files/{bucket}/page.html",
    )  # fmt: skip
    head, _, body = got.out.partition(b"\r\n\r\n")
    assert body == page  # not gzipped on the way: Content-Length and ETag stay the file's
    assert f"content-length: {len(page)}".encode() in head.lower(), head


async def test_port_80_redirect_keeps_put(behind_nginx, bucket, tmp_path):
    gw = behind_nginx
    await gw.service.grant("alice", Rule.parse(f"{bucket}:read,write"))
    # Over 1 MiB (nginx's default body limit, checked before the redirect) and
    # sent with Expect: 100-continue, as curl does for such a body.
    src = tmp_path / "via-80.bin"
    src.write_bytes(random_bytes(2 * MiB))
    up = await run(
        "curl", "-sSk", "--fail", "-L", "-u", f"alice:{PASSWORD}", "--location-trusted",
        "-w", "%{num_redirects} %{response_code}", "-o", "/dev/null",
        "-T", src, f"{gw.http}/files/{bucket}/via-80.bin",
    )  # fmt: skip
    assert up.rc == 0, up.errtext
    assert up.text == "1 201", up.text
    down = await run("curl", "-sSk", "--fail", "-u", f"alice:{PASSWORD}", f"{gw.https}/files/{bucket}/via-80.bin")
    assert down.out == src.read_bytes()


async def test_acme_challenge_served_over_port_80(behind_nginx):
    gw = behind_nginx
    token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"  # RFC 8555 section 8.3's example token
    challenge = gw.nginx_root / "webroot" / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True)
    (challenge / token).write_text(f"{token}.key-thumbprint")
    got = await run(
        "curl", "-sS", "-w", "\n%{response_code} %{num_redirects}", f"{gw.http}/.well-known/acme-challenge/{token}"
    )
    assert got.text == f"{token}.key-thumbprint\n200 0", got.text
    # A token certbot did not write is a plain 404 there, not a redirect nor the gateway.
    missing = await run(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{response_code}", f"{gw.http}/.well-known/acme-challenge/nope"
    )
    assert missing.text == "404"
    # The rest of port 80 still redirects, port kept as configured.
    other = await run(
        "curl", "-sS", "-o", "/dev/null", "-w", "%{response_code} %{redirect_url}", f"{gw.http}/.well-known/other"
    )
    assert other.text == f"308 {gw.https}/.well-known/other", other.text


async def test_https_links_and_secure_session_cookie(behind_nginx, bucket, store, tmp_path):
    gw = behind_nginx
    await gw.service.grant("alice", Rule.parse(f"{bucket}:read"))
    await store.put(bucket, "doc.txt", b"signed")
    for version in ("--http1.1", "--http2"):  # Host, or HTTP/2's :authority
        link = await run("curl", "-sSk", version, "-u", f"alice:{PASSWORD}", f"{gw.https}/downloads3/{bucket}/doc.txt")
        url = link.text.strip()
        assert url.startswith(f"{gw.https}/files/{bucket}/doc.txt?"), url  # the scheme, host and port clients used
        fetched = await run("curl", "-sSk", "--fail", url)
        assert fetched.out == b"signed"
    # A client that sends no Host at all (HTTP/1.0) gets links to server_name.
    link = await run(
        "curl", "-sSk", "--http1.0", "-H", "Host:", "-u", f"alice:{PASSWORD}", f"{gw.https}/downloads3/{bucket}/doc.txt"
    )
    assert link.text.strip().startswith(f"https://127.0.0.1/files/{bucket}/doc.txt?"), link.text

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


async def test_refused_upload_answered_by_the_gateway(start_gateway, start_nginx, bucket, store, tmp_path):
    gw = await gateway_behind_nginx(start_gateway, start_nginx, max_upload_bytes=48 * MiB)
    await gw.service.grant("alice", Rule.parse(f"{bucket}:read"))  # no write
    src = tmp_path / "refused.bin"
    src.write_bytes(random_bytes(64 * MiB))
    # How much of the body curl sent before the refusal stopped it: nginx answers "100 Continue"
    # itself (HTTP/1.1) or keeps opening the stream's window (HTTP/2) while it relays, so the
    # body flows until curl reads the answer, a few MiB of buffers (README, "Refused uploads"),
    # never the whole file.
    most = {"--http1.1": 16 * MiB, "--http2": 16 * MiB}
    refusals = [("403", f"alice may not write {bucket}/refused.bin"), ("413", "exceeds the limit of 50331648 bytes")]
    for status_wanted, message in refusals:  # no rights; then rights, but over max_upload_bytes
        for version in ("--http1.1", "--http2"):
            refused = await run(
                "curl", "-sSk", version, "-u", f"alice:{PASSWORD}", "-w", "\n%{response_code} %{size_upload}",
                "-T", src, f"{gw.https}/files/{bucket}/refused.bin",
            )  # fmt: skip
            body, _, tail = refused.text.rpartition("\n")
            status, sent = tail.split()
            assert status == status_wanted, refused.text
            assert message in body, body  # the gateway's message, not nginx's page
            assert int(sent) <= most[version], f"{version}: {int(sent) / MiB:.1f} MiB sent before the {status}"
        await gw.service.grant("alice", Rule.parse(f"{bucket}:write"))
    assert not await store.exists(bucket, "refused.bin")


async def test_forwarded_headers_set_by_nginx(start_nginx):
    """What the site sends upstream, seen by a plain aiohttp server in the gateway's place."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    upstream = TestServer(app, host="127.0.0.1")
    await upstream.start_server()
    try:
        nginx = await start_nginx(upstream.port)
        port = nginx.https.rsplit(":", 1)[1]
        for version in ("--http1.1", "--http2"):
            got = await run(
                "curl", "-sSk", "--fail", version, f"{nginx.https}/x",
                # A forged chain and a forged scheme: both replaced, not passed on or appended to.
                "-H", "X-Forwarded-For: 203.0.113.9", "-H", "X-Forwarded-Proto: http",
                "-H", "X-Forwarded-Host: evil.example",
            )  # fmt: skip
            assert got.rc == 0, got.errtext
            headers = seen[-1]
            assert headers["X-Forwarded-For"] == "127.0.0.1", headers
            assert headers["X-Forwarded-Proto"] == "https", headers
            assert headers["X-Forwarded-Host"] == headers["Host"] == f"127.0.0.1:{port}", headers
            assert "Connection" not in headers, headers
    finally:
        await upstream.close()


async def test_forwarded_headers_believed_from_nginx_only(start_gateway, start_nginx, bucket, store, caplog, tmp_path):
    """trusted_proxies = 127.0.0.1 (nginx): its X-Forwarded-* count; a client at 127.0.0.2 that talks
    straight to the gateway and forges them changes neither links, nor cookies, nor its own address."""
    caplog.set_level(logging.INFO, logger="s3gate.audit")
    gateway = await start_gateway(trusted_proxies="127.0.0.1", auth=True, login_delay=0, audit_log="-")
    service = gateway.app[keys.AUTH]
    await service.add_user("alice", PASSWORD)
    await service.grant("alice", Rule.parse(f"{bucket}:read"))
    await store.put(bucket, "doc.txt", b"x")
    nginx = await start_nginx(gateway.port)
    forged = [
        "-H",
        "X-Forwarded-For: 203.0.113.9",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-Host: evil.example",
    ]

    def failed_logins() -> list[str]:
        events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "s3gate.audit"]
        return [e["remote"] for e in events if e["event"] == "login_failed"]

    async def session_cookie_secure(base: str) -> bool:
        jar = tmp_path / f"jar-{len(caplog.records)}.txt"
        login = await run(
            "curl", "-sSk", "--interface", "127.0.0.2", "-c", jar, "-o", "/dev/null", "-w", "%{http_code}", *forged,
            "--data-urlencode", "username=alice", "--data-urlencode", f"password={PASSWORD}", f"{base}/login",
        )  # fmt: skip
        assert login.text == "303", login.text
        [line] = [line for line in jar.read_text().splitlines() if "s3gate_session" in line]
        return line.split("\t")[3] == "TRUE"

    for base, client in (
        # Through nginx, from 127.0.0.2: nginx's headers name the client and the https address.
        (nginx.https, "127.0.0.2"),
        # Straight to the gateway from 127.0.0.2 (not a trusted proxy): the forged headers are its own words.
        (gateway.base, "127.0.0.2"),
    ):
        link = await run("curl", "-sSk", "--interface", "127.0.0.2", "-u", f"alice:{PASSWORD}", *forged,
                         f"{base}/downloads3/{bucket}/doc.txt")  # fmt: skip
        assert link.text.startswith(f"{base}/files/{bucket}/doc.txt?"), link.text
        caplog.clear()
        refused = await run("curl", "-sSk", "--interface", "127.0.0.2", "-u", "mallory:wrong password", *forged,
                            "-o", "/dev/null", "-w", "%{http_code}", f"{base}/files/{bucket}/")  # fmt: skip
        assert refused.text == "401"
        assert failed_logins() == [client]  # the audit log's and the throttle's address
        assert await session_cookie_secure(base) is (base == nginx.https)


async def test_nginx_t_accepts_the_site_in_debians_main_config(tmp_path):
    """`nginx -t` on the shipped site inside Debian's own /etc/nginx/nginx.conf, as installed.

    Moved are only what -t opens: the certificate (loaded), the logs and the
    pid file (unwritable unless root) and the listening sockets (-t binds
    them: loopback and free ports here, as in every test).
    """
    nginx = nginx_binary()
    assert DEBIAN_MAIN.exists(), f"{DEBIAN_MAIN} is Debian's nginx main configuration (apt-get install nginx)"
    root = tmp_path / "nginx-t"
    root.mkdir()
    cert = await asyncio.to_thread(certificate, root)  # s3gate code writing files: off the loop
    (root / "s3gate.conf").write_text(render(SITE, [*loopback(free_port(), free_port()), *cert]))
    main = render(
        DEBIAN_MAIN,
        [
            ("include /etc/nginx/sites-enabled/*;", f"include {root}/s3gate.conf;", 1),
            ("pid /run/nginx.pid;", f"pid {root}/nginx.pid;", 1),
            ("error_log /var/log/nginx/error.log;", f"error_log {root}/error.log;", 1),
            ("access_log /var/log/nginx/access.log;", f"access_log {root}/access.log;", 1),
        ],
    )
    (root / "nginx.conf").write_text(main)
    # No -p: Debian's modules-enabled/*.conf load "modules/..." relative to the built-in prefix.
    checked = await run(nginx, "-t", "-c", root / "nginx.conf")
    assert checked.rc == 0, checked.errtext
    assert "test is successful" in checked.errtext, checked.errtext
    # Nothing to warn about either (a redefined listen option, a conflicting server name...),
    # save nginx noting that "user" needs root when the suite runs unprivileged.
    warnings = [line for line in checked.errtext.splitlines() if "[warn]" in line and '"user" directive' not in line]
    assert not warnings, checked.errtext
