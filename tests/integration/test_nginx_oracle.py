"""nginx as the oracle: the same files, served statically by a private nginx
(`etag on`) and proxied by s3gate from SeaweedFS, must answer a battery of
Range and conditional requests alike: status, Content-Range, Content-Length
and the bytes.

Where they differ, RFC 9110 decides, and every such case is listed in
DIFFERENCES below with the section that sides with s3gate. nginx's answer in
those cases is checked too, so a future nginx that agrees with the RFC is
noticed (and accepted), and any other disagreement fails.

ETags and Last-Modified differ between the two servers (nginx: mtime-size;
S3: the MD5; the files' mtime vs the upload time), so each request is filled
in with the validators of the server it goes to, read from a plain GET first.
Requests go over a raw socket, so header lines reach both servers exactly as
written (repeated lines, non-ASCII digits).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from s3gate.embedded import free_port

pytestmark = pytest.mark.integration

NGINX_CONF = """
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        etag on;
    }}
}}
"""

FILES = {
    "data.bin": os.urandom(100_000),
    "small.txt": b"0123456789abcdef" * 64,
    "empty": b"",
}
MTIME = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC).timestamp()
BEFORE = "Mon, 01 Jan 2001 00:00:00 GMT"  # before both servers' Last-Modified
AFTER = "Fri, 01 Jan 2100 00:00:00 GMT"  # after both


@dataclass
class Case:
    name: str
    headers: list[tuple[str, str]]  # {etag}, {lm}, {lm+1s}, {lm_zone} are filled per server
    file: str = "data.bin"
    method: str = "GET"


def R(spec: str, file: str = "data.bin", method: str = "GET") -> Case:
    return Case(f"{method} Range {spec} ({file})", [("Range", spec)], file, method)


CASES = [
    # -- Range: single, suffix, beyond the end, unsatisfiable, malformed, multi
    R("bytes=0-99"),
    R("bytes=99900-"),
    R("bytes=-500"),
    R("bytes=0-0"),
    R("bytes=99999-99999"),
    R("bytes=0-999999"),
    R("bytes=-999999"),
    R("bytes=100000-"),
    R("bytes=999999-"),
    R("bytes=-0"),
    R("BYTES=0-9"),
    R("items=0-5"),
    R("bytes=5-1"),
    R("bytes=1_0-20"),
    R("bytes=\u0661\u0660-\u0662\u0660"),
    R("bytes=abc"),
    R("bytes=0-1,5-6"),
    R("bytes=0-1,999999-"),
    R("bytes=0-99", method="HEAD"),
    R("bytes=0-", "empty"),
    R("bytes=0-0", "empty"),
    R("bytes=-5", "empty"),
    R("bytes=0-9", "small.txt"),
    Case("GET empty", [], "empty"),
    Case("HEAD", [], method="HEAD"),
    # -- If-None-Match
    Case("INM own", [("If-None-Match", "{etag}")]),
    Case("INM other", [("If-None-Match", '"nope"')]),
    Case("INM *", [("If-None-Match", "*")]),
    Case("INM list", [("If-None-Match", '"nope", {etag}')]),
    Case("INM weak own", [("If-None-Match", "W/{etag}")]),
    Case("INM two lines", [("If-None-Match", '"nope"'), ("If-None-Match", "{etag}")]),
    Case("INM own, empty file", [("If-None-Match", "{etag}")], "empty"),
    Case("HEAD INM own", [("If-None-Match", "{etag}")], method="HEAD"),
    # -- If-Match
    Case("IM own", [("If-Match", "{etag}")]),
    Case("IM other", [("If-Match", '"nope"')]),
    Case("IM *", [("If-Match", "*")]),
    Case("IM weak own", [("If-Match", "W/{etag}")]),
    Case("IM two lines", [("If-Match", '"nope"'), ("If-Match", "{etag}")]),
    # -- If-Modified-Since
    Case("IMS own", [("If-Modified-Since", "{lm}")]),
    Case("IMS before", [("If-Modified-Since", BEFORE)]),
    Case("IMS later than Last-Modified", [("If-Modified-Since", "{lm+1s}")]),
    Case("IMS garbage", [("If-Modified-Since", "yesterday")]),
    Case("IMS numeric zone", [("If-Modified-Since", "{lm_zone}")]),
    # -- If-Unmodified-Since
    Case("IUS own", [("If-Unmodified-Since", "{lm}")]),
    Case("IUS before", [("If-Unmodified-Since", BEFORE)]),
    Case("IUS after", [("If-Unmodified-Since", AFTER)]),
    Case("IUS garbage", [("If-Unmodified-Since", "yesterday")]),
    # -- If-Range
    Case("If-Range own etag", [("Range", "bytes=0-9"), ("If-Range", "{etag}")]),
    Case("If-Range other etag", [("Range", "bytes=0-9"), ("If-Range", '"nope"')]),
    Case("If-Range own date", [("Range", "bytes=0-9"), ("If-Range", "{lm}")]),
    Case("If-Range before", [("Range", "bytes=0-9"), ("If-Range", BEFORE)]),
    Case("If-Range list", [("Range", "bytes=0-9"), ("If-Range", '"nope", {etag}')]),
    Case("If-Range weak own", [("Range", "bytes=0-9"), ("If-Range", "W/{etag}")]),
    Case("If-Range garbage", [("Range", "bytes=0-9"), ("If-Range", "yesterday")]),
    # -- combinations (RFC 9110 §13.2.2's order)
    Case("INM own + IMS before", [("If-None-Match", "{etag}"), ("If-Modified-Since", BEFORE)]),
    Case("IM own + IUS before", [("If-Match", "{etag}"), ("If-Unmodified-Since", BEFORE)]),
    Case("IM other + INM own", [("If-Match", '"nope"'), ("If-None-Match", "{etag}")]),
    Case("INM own + Range", [("If-None-Match", "{etag}"), ("Range", "bytes=0-9")]),
    Case("IM other + Range", [("If-Match", '"nope"'), ("Range", "bytes=0-9")]),
    Case("IMS own + Range", [("If-Modified-Since", "{lm}"), ("Range", "bytes=0-9")]),
]


@dataclass
class Difference:
    """A case where s3gate and nginx (Debian's 1.22) answer differently and RFC 9110 sides with s3gate.

    `why` names the section. The two multi-range cases are a choice RFC 9110
    leaves open (a server MAY ignore Range); for the two empty-file ranges its
    SHOULD (416) stands against nginx's MAY (ignore Range); the others are
    its MUSTs and SHOULDs against nginx's reading.
    """

    s3gate: int  # s3gate's status
    nginx: int  # what nginx answers
    why: str


DIFFERENCES = {
    "GET Range bytes=5-1 (data.bin)": Difference(
        200, 416, "§14.1.1: last-pos < first-pos is syntactically invalid; the header is ignored"
    ),
    "GET Range bytes=1_0-20 (data.bin)": Difference(200, 416, "§14.1.1: not the range grammar; ignored (§14.2)"),
    "GET Range bytes=\u0661\u0660-\u0662\u0660 (data.bin)": Difference(
        200, 416, "§14.1.1: DIGIT is ASCII (RFC 5234); ignored (§14.2)"
    ),
    "GET Range bytes=abc (data.bin)": Difference(200, 416, "§14.1.1: not the range grammar; ignored (§14.2)"),
    "GET Range bytes=0-1,5-6 (data.bin)": Difference(
        200, 206, "§14.2: a server MAY ignore Range; s3gate sends no multipart/byteranges"
    ),
    "GET Range bytes=0-1,999999- (data.bin)": Difference(
        200, 206, "§14.2: a server MAY ignore Range; s3gate ignores every multi-range set"
    ),
    "HEAD Range bytes=0-99 (data.bin)": Difference(
        200, 206, "§14.2: a server MUST ignore Range on methods without range handling; only GET has it"
    ),
    "GET Range bytes=0- (empty)": Difference(
        416, 200, "§14.1.1, §14.2: first-pos >= length is unsatisfiable, SHOULD be 416 (nginx ignores Range, a MAY)"
    ),
    "GET Range bytes=0-0 (empty)": Difference(
        416, 200, "§14.1.1, §14.2: first-pos >= length is unsatisfiable, SHOULD be 416 (nginx ignores Range, a MAY)"
    ),
    "INM two lines": Difference(304, 400, "§5.3: repeated field lines are one comma-separated list"),
    "IM two lines": Difference(200, 400, "§5.3: repeated field lines are one comma-separated list"),
    "IMS later than Last-Modified": Difference(
        304, 200, "§13.1.3: 304 if Last-Modified is earlier than or equal to the date (nginx: exact match)"
    ),
    "IMS numeric zone": Difference(200, 304, "§13.1.3: not an HTTP-date (§5.6.7), so the field is ignored"),
    "IUS garbage": Difference(200, 412, "§13.1.4: an invalid HTTP-date is ignored"),
    "INM own + IMS before": Difference(304, 200, "§13.2.2: If-Modified-Since is evaluated only without If-None-Match"),
    "IM own + IUS before": Difference(200, 412, "§13.2.2: If-Unmodified-Since is evaluated only without If-Match"),
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_head: str = field(repr=False, default="")


async def fetch(port: int, method: str, path: str, headers: list[tuple[str, str]]) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    status_line, *header_lines = text.split("\r\n")
    parsed: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), parsed, body, text)


@dataclass
class Server:
    name: str
    port: int
    prefix: str  # path prefix of the files
    validators: dict[str, dict[str, str]] = field(default_factory=dict)  # file -> {etag, lm}

    async def ask(self, case: Case) -> Answer:
        v = self.validators[case.file]
        last = email.utils.parsedate_to_datetime(v["lm"])
        values = {
            "{etag}": v["etag"],
            "{lm}": v["lm"],
            "{lm+1s}": email.utils.format_datetime(last + dt.timedelta(seconds=1), usegmt=True),
            "{lm_zone}": v["lm"].replace("GMT", "+0000"),
        }
        headers = []
        for name, value in case.headers:
            for token, real in values.items():
                value = value.replace(token, real)
            headers.append((name, value))
        return await fetch(self.port, case.method, self.prefix + case.file, headers)


@pytest.fixture
async def servers(start_gateway, bucket, store, tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is needed (apt-get install nginx-light; .ci/run does it)"
    root = tmp_path / "nginx"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "www"):
        (root / sub).mkdir(parents=True)
    for name, data in FILES.items():
        (root / "www" / name).write_bytes(data)
        os.utime(root / "www" / name, (MTIME, MTIME))
        await store.put(bucket, name, data)
    port = free_port()
    # As root, nginx's workers would run as nobody, who cannot read pytest's 0700 temp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=port, user=user))
    proc = await asyncio.create_subprocess_exec(
        nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                if (await fetch(port, "GET", "/small.txt", [])).status == 200:
                    break
            except OSError:
                pass
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError((root / "error.log").read_text()[-2000:])
        gateway = await start_gateway()
        pair = [Server("nginx", port, "/"), Server("s3gate", gateway.port, f"/files/{bucket}/")]
        for server in pair:
            for name, data in FILES.items():
                plain = await fetch(server.port, "GET", server.prefix + name, [])
                assert plain.status == 200 and plain.body == data, (server.name, name, plain.raw_head)
                server.validators[name] = {"etag": plain.headers["etag"], "lm": plain.headers["last-modified"]}
        yield pair
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def compare(case: Case, s3gate: Answer, nginx: Answer) -> list[str]:
    """What differs between the two answers, in the fields the battery compares."""
    problems = []
    if s3gate.status != nginx.status:
        return [f"status {s3gate.status} vs nginx {nginx.status}"]
    if s3gate.status in (200, 206, 416):
        for name in ("content-range", "content-length"):
            if name == "content-length" and s3gate.status == 416:
                continue  # the error bodies differ (JSON vs HTML)
            if s3gate.headers.get(name) != nginx.headers.get(name):
                problems.append(f"{name} {s3gate.headers.get(name)!r} vs nginx {nginx.headers.get(name)!r}")
        if s3gate.status != 416 and s3gate.body != nginx.body:
            problems.append(f"body ({len(s3gate.body)} bytes) differs from nginx's ({len(nginx.body)} bytes)")
    return problems


async def test_downloads_answer_like_nginx_or_like_rfc_9110(servers):
    nginx, s3gate = servers
    assert set(DIFFERENCES) <= {c.name for c in CASES}
    report = []
    for case in CASES:
        ours, theirs = await s3gate.ask(case), await nginx.ask(case)
        assert "x-request-id" in ours.headers, case.name
        if case.name in DIFFERENCES:
            diff = DIFFERENCES[case.name]
            if ours.status != diff.s3gate:
                report.append(f"{case.name}: s3gate {ours.status}, RFC 9110 {diff.why} -> {diff.s3gate}")
            elif theirs.status not in (diff.nginx, diff.s3gate):
                report.append(f"{case.name}: nginx {theirs.status}, listed as {diff.nginx}")
            elif ours.status in (200, 206) and ours.body != expected_body(case, ours):
                report.append(f"{case.name}: s3gate's bytes are wrong")
            continue
        for problem in compare(case, ours, theirs):
            report.append(f"{case.name}: {problem}")
    assert not report, "\n".join(report)


def expected_body(case: Case, answer: Answer) -> bytes:
    data = FILES[case.file]
    if case.method == "HEAD":
        return b""
    if answer.status == 206:
        first, last = answer.headers["content-range"].removeprefix("bytes ").split("/")[0].split("-")
        return data[int(first) : int(last) + 1]
    return data
