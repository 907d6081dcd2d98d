"""storage/fast.py's hand-made SigV4 against botocore's own signer.

fast.py is kept only while it signs exactly as botocore's ``S3SigV4Auth`` does
for the same request. Each case is generated from a seeded random generator
(deterministic, no new dependency): object keys with unicode, spaces and
reserved characters, the headers fast.py is given by storage/s3.py (Range,
If-Match, Content-Type, Content-Length, Content-MD5, x-amz-checksum-crc32,
x-amz-meta-*), access keys, secrets, session tokens, regions, http/https,
endpoints with and without a port, path and virtual addressing, and the clock.

The reference is built from the inputs, not from fast.py's output: the URL
path is encoded by botocore's own serialiser (``percent_encode(key, safe="/~")``,
which the client check below holds to a real client's URL), and the headers
are signed by ``S3SigV4Auth.add_auth`` with the clock fixed at the same instant.
The third check sends requests through ``FastS3.request`` to a loopback server
and verifies what arrived the way a store does, so nothing between signing and
the wire (yarl, aiohttp) may change a signed byte.

Setting ``s3_fast_path = false`` makes storage/s3.py use botocore for every call.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import random
import socket
import string
import types
from urllib.parse import urlsplit

import aiohttp
import botocore.auth
import botocore.session
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.utils import percent_encode

from s3gate.storage import fast as fast_mod
from s3gate.storage.fast import FastS3
from s3gate.storage.names import check_key
from s3gate.storage.s3 import Storage
from tests.conftest import make_settings

CASES = 300
REGIONS = ("us-east-1", "eu-west-3", "ap-southeast-2", "cn-north-1", "us-gov-west-1", "garage", "auto")
ENDPOINTS = (
    "http://127.0.0.1:8333",
    "http://localhost:9000",
    "https://s3.eu-west-3.amazonaws.com",
    "http://minio.internal",
    "https://objects.example.org:8443",
    "http://[::1]:8333",
    "https://S3.Example.COM",
)
# Pieces keys are made of: every character S3 keys commonly trip over.
KEY_PIECES = (
    *string.ascii_letters,
    *string.digits,
    " ", "  ", "+", "%", "%20", "?", "#", "=", "&", "~", "/", "//", "///", "-", "_", ".", "!", "'",
    "(", ")", "*", ",", ";", ":", "@", "$", "[", "]", "{", "}", "^", "`", "|", "\\", '"', "<", ">",
    "ü", "é", "ñ", "日本語", "ß", "Ω", "😀", "\u00a0", "\u200b", "ﬁ",
)  # fmt: skip
CONTENT_TYPES = (
    "application/octet-stream",
    "text/plain; charset=utf-8",
    "multipart/form-data;  boundary=x",
    "  image/png  ",
    "application/x-www-form-urlencoded",
)


def _key(rng: random.Random) -> str:
    while True:
        key = "".join(rng.choice(KEY_PIECES) for _ in range(rng.randint(1, 24)))
        if rng.random() < 0.15:
            key += "/"  # a folder marker
        try:
            # The gateway refuses '.' / '..' segments and control characters
            # before anything is signed; generate only keys it would send.
            return check_key(key, allow_folder=True)
        except Exception:
            continue


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def _headers(rng: random.Random, method: str) -> dict[str, str]:
    h: dict[str, str] = {}
    if method == "GET" and rng.random() < 0.6:
        start = rng.randint(0, 1 << 33)
        h["Range"] = f"bytes={start}-{start + rng.randint(0, 1 << 20)}"
    if method in ("GET", "HEAD") and rng.random() < 0.4:
        h["If-Match"] = f'"{rng.randbytes(16).hex()}"' + ("-3" if rng.random() < 0.3 else "")
    if method == "PUT":
        h["Content-Type"] = rng.choice(CONTENT_TYPES)
        h["Content-Length"] = str(rng.randint(0, 5 << 30))
        h[rng.choice(("x-amz-checksum-crc32", "X-Amz-Checksum-Crc32"))] = _b64(rng, 4)
        if rng.random() < 0.3:
            h["Content-MD5"] = _b64(rng, 16)
        for i in range(rng.randint(0, 3)):
            name = rng.choice(("x-amz-meta-", "X-Amz-Meta-")) + rng.choice(("s3gate", "owner", "a-b", "z9")) + str(i)
            # Values with runs of spaces and spaces around them: SigV4 trims
            # and squeezes them ("Trimall"), on both sides of the comparison.
            h[name] = rng.choice(("1", "  padded  ", "two  spaces", "tab\tin", "x" * rng.randint(1, 80)))
    if rng.random() < 0.1:
        # Sent but never signed, by botocore's rule (SIGNED_HEADERS_BLACKLIST).
        h[rng.choice(("User-Agent", "user-agent"))] = "s3gate/1 (probe)"
    return h


def _case(seed: int) -> dict:
    rng = random.Random(seed)
    method = rng.choice(("GET", "HEAD", "PUT"))
    endpoint = rng.choice(ENDPOINTS)
    dotted = rng.random() < 0.2
    bucket = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(rng.randint(3, 20)))
    if dotted:
        bucket = f"{bucket}.v1.example"
    alnum = string.ascii_letters + string.digits
    return {
        "method": method,
        "endpoint": endpoint,
        "region": rng.choice(REGIONS),
        "addressing": rng.choice(("path", "path", "virtual")),
        "bucket": bucket,
        "key": _key(rng),
        "headers": _headers(rng, method),
        "access_key": rng.choice(("AKIA", "ASIA", "")) + "".join(rng.choice(alnum) for _ in range(rng.randint(3, 20))),
        "secret_key": "".join(rng.choice(alnum + "+/=") for _ in range(rng.randint(1, 40))),
        "token": _b64(rng, rng.randint(16, 600)) if rng.random() < 0.5 else None,
        # Any second of a century; a third of the cases a second before or at midnight.
        "when": dt.datetime(2000, 1, 1)
        + dt.timedelta(
            days=rng.randint(0, 36500),
            seconds=rng.choice((rng.randint(0, 86399), 86399, 0)),
        ),
    }


class StaticCredentials:
    """What fast.py reads from botocore's resolver: frozen credentials, fetched per request."""

    def __init__(self, access_key: str, secret_key: str, token: str | None = None):
        self.frozen = ReadOnlyCredentials(access_key, secret_key, token)

    async def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return self.frozen


@pytest.fixture
def clock(monkeypatch):
    """Fix the instant both signers read: fast.py's ``dt.datetime.now(dt.UTC)``
    and botocore's ``get_current_datetime()`` (naive UTC), test-only."""

    def freeze(when: dt.datetime) -> None:
        aware = when.replace(tzinfo=dt.UTC)

        class Frozen(dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return aware if tz is not None else when

        monkeypatch.setattr(fast_mod, "dt", types.SimpleNamespace(datetime=Frozen, UTC=dt.UTC))
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: when)

    return freeze


def botocore_signed(method: str, url: str, headers: dict[str, str], creds, region: str) -> AWSRequest:
    """The same request, signed by botocore as its S3 client would with
    s3gate's client config (payload_signing_enabled=False: UNSIGNED-PAYLOAD)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    botocore.auth.S3SigV4Auth(Credentials(creds.access_key, creds.secret_key, creds.token), "s3", region).add_auth(
        request
    )
    return request


def reference_url(case: dict) -> str:
    """Where botocore's S3 client sends this call: its serialiser's key
    encoding; virtual-host style only if asked for and the endpoint is a name,
    not an IP address (as botocore does). Dotted buckets: fast.py always goes
    path-style (botocore does so over https only); both are valid requests."""
    parts = urlsplit(case["endpoint"])
    path = "/" + percent_encode(case["key"], safe="/~")
    try:
        ipaddress.ip_address(parts.hostname)
        ip = True
    except ValueError:
        ip = False
    if case["addressing"] == "virtual" and "." not in case["bucket"] and not ip:
        return f"{parts.scheme}://{case['bucket']}.{parts.netloc}{path}"
    return f"{parts.scheme}://{parts.netloc}/{case['bucket']}{path}"


@pytest.mark.parametrize("seed", range(CASES))
async def test_signature_equals_botocores(seed, clock):
    case = _case(seed)
    clock(case["when"])
    creds = ReadOnlyCredentials(case["access_key"], case["secret_key"], case["token"])
    fast = FastS3(
        endpoint=case["endpoint"],
        region=case["region"],
        addressing=case["addressing"],
        credentials=StaticCredentials(case["access_key"], case["secret_key"], case["token"]),
        session=None,
    )
    host, path = fast._target(case["bucket"], case["key"])
    sent = await fast._signed(case["method"], host, path, case["headers"])

    ref = botocore_signed(case["method"], reference_url(case), case["headers"], creds, case["region"])
    ref_parts = urlsplit(ref.url)
    assert (host.lower(), path) == (botocore.auth._host_from_url(ref.url).lower(), ref_parts.path), case
    assert sent["Authorization"] == ref.headers["Authorization"], case
    # Every header botocore added or signed goes out with the same value.
    got = {k.lower(): v for k, v in sent.items()}
    for name, value in ref.headers.items():
        assert got.get(name.lower()) == value, (name, case)
    assert got["host"] == host
    assert set(got) == {"host", "authorization", *(k.lower() for k in ref.headers.keys())}


async def test_one_signer_across_cases_keys_and_days(clock):
    """A worker keeps one FastS3 for its life while secrets rotate and days
    pass: its cached signing key must follow both. All cases in turn, twice
    (so each day's key is reused and replaced), on one signer per store."""
    signers: dict[tuple[str, str, str], FastS3] = {}
    cases = [_case(seed) for seed in range(CASES)]
    for case in cases + cases[::-1]:
        clock(case["when"])
        creds = StaticCredentials(case["access_key"], case["secret_key"], case["token"])
        fast = signers.setdefault(
            (case["endpoint"], case["region"], case["addressing"]),
            FastS3(
                endpoint=case["endpoint"],
                region=case["region"],
                addressing=case["addressing"],
                credentials=creds,
                session=None,
            ),
        )
        host, path = fast._target(case["bucket"], case["key"])
        # The same instant, then a rotated secret (what a credential refresh does).
        for secret in (case["secret_key"], case["secret_key"] + "R"):
            creds = StaticCredentials(case["access_key"], secret, case["token"])
            fast._credentials = creds
            sent = await fast._signed(case["method"], host, path, case["headers"])
            ref = botocore_signed(case["method"], reference_url(case), case["headers"], creds.frozen, case["region"])
            assert sent["Authorization"] == ref.headers["Authorization"], case
    assert len(signers) < len(cases) / 2  # signers really were reused


def test_the_generated_cases_cover_what_they_claim():
    """The generator is only as good as what it produces: the corners are in it."""
    cases = [_case(seed) for seed in range(CASES)]
    keys = "".join(c["key"] for c in cases)
    for needle in ("~", "+", "%", "?", "#", "=", "&", " ", "//", "ü", "😀"):
        assert needle in keys, needle
    assert any(c["key"].endswith("/") for c in cases)
    assert {c["method"] for c in cases} == {"GET", "HEAD", "PUT"}
    assert {c["region"] for c in cases} == set(REGIONS) and {c["endpoint"] for c in cases} == set(ENDPOINTS)
    assert any(c["token"] for c in cases) and any(not c["token"] for c in cases)
    names = {n.lower() for c in cases for n in c["headers"]}
    assert {"range", "if-match", "content-type", "content-md5", "x-amz-checksum-crc32"} <= names
    assert any(n.startswith("x-amz-meta-") for n in names) and "user-agent" in names
    assert {c["addressing"] for c in cases} == {"path", "virtual"}
    assert any(c["when"].time() == dt.time(23, 59, 59) for c in cases)


class _Raw:
    def stream(self, **_):
        return iter((b"",))


@pytest.mark.parametrize("endpoint", ["http://s3.test:8333", "https://127.0.0.1:8443", "http://[::1]:8333"])
@pytest.mark.parametrize("addressing", ["path", "virtual"])
def test_key_paths_are_the_ones_a_botocore_client_sends(addressing, endpoint):
    """The reference above encodes keys as botocore's serialiser does; a real
    botocore client (nothing sent: before-send answers) holds it to that."""
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="eu-west-3",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing, "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 1},
        ),
    )
    seen: list[str] = []

    def answer(request, **_):
        seen.append(request.url)
        return AWSResponse(request.url, 200, {}, _Raw())

    client.meta.events.register("before-send.s3.HeadObject", answer)
    fast = FastS3(endpoint=endpoint, region="eu-west-3", addressing=addressing, credentials=None, session=None)
    rng = random.Random(8)
    for _ in range(100):
        key = _key(rng)
        client.head_object(Bucket="bkt", Key=key)
        host, path = fast._target("bkt", key)
        assert seen[-1] == f"{fast.scheme}://{host}{path}", key
        assert seen[-1] == reference_url({"endpoint": endpoint, "addressing": addressing, "bucket": "bkt", "key": key})
    client.close()


class _Loopback(AbstractResolver):
    """Every name resolves to 127.0.0.1, so virtual-host names reach the test server."""

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self):
        pass


@pytest.mark.parametrize("addressing", ["path", "virtual"])
async def test_what_arrives_verifies_as_a_store_checks_it(aiohttp_server, addressing, clock):
    """Through FastS3.request to a loopback server: rebuild each arrived request
    from its own Host, raw path and the headers it says it signed, sign that
    with botocore at its X-Amz-Date, and require the same Authorization."""
    arrived: list[tuple[str, str, dict[str, str]]] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        arrived.append((request.method, request.raw_path, dict(request.headers)))
        return web.Response(headers={"ETag": '"e"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    endpoint = f"http://s3.test:{server.port}"
    rng = random.Random(20 if addressing == "path" else 21)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=_Loopback()),
        auto_decompress=False,
        skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent"),
    ) as http:
        for _ in range(40):
            case = _case(rng.randint(0, 1 << 30))
            clock(case["when"])
            token = case["token"]
            fast = FastS3(
                endpoint=endpoint,
                region=case["region"],
                addressing=addressing,
                credentials=StaticCredentials(case["access_key"], case["secret_key"], token),
                session=http,
            )
            headers = dict(case["headers"])
            data = None
            if case["method"] == "PUT":
                data = rng.randbytes(rng.randint(0, 300))
                headers["Content-Length"] = str(len(data))
            resp = await fast.request(case["method"], "bkt", case["key"], "Op", headers=headers, data=data)
            resp.release()

            method, raw_path, got = arrived[-1]
            auth = got["Authorization"]
            signed_names = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
            lower = {k.lower(): v for k, v in got.items()}
            assert "host" in signed_names
            if case["method"] == "PUT":
                assert "content-type" in signed_names  # S3 requires it signed when present
            assert all(n in signed_names for n in lower if n.startswith("x-amz-")), (lower, case)
            clock(dt.datetime.strptime(lower["x-amz-date"], "%Y%m%dT%H%M%SZ"))
            creds = ReadOnlyCredentials(case["access_key"], case["secret_key"], token)
            as_signed = {n: lower[n] for n in signed_names if n not in ("x-amz-date", "x-amz-security-token")}
            ref = botocore_signed(method, f"http://{lower['host']}{raw_path}", as_signed, creds, case["region"])
            assert ref.headers["Authorization"] == auth, (raw_path, got, case)
            assert (
                raw_path
                == urlsplit(
                    reference_url({**case, "endpoint": endpoint, "addressing": addressing, "bucket": "bkt"})
                ).path
            )


async def test_setting_off_sends_every_call_through_botocore(tmp_path, moto_endpoint, s3, bucket):
    """s3_fast_path = false: no FastS3 is built, so Get/Head/PutObject go
    through aiobotocore; they still work end to end against moto."""
    common = dict(
        s3_endpoint=moto_endpoint, s3_access_key="testing", s3_secret_key="testing", data_dir=str(tmp_path / "d")
    )
    async with Storage.open(make_settings(**common)) as storage:
        assert isinstance(storage.fast, FastS3)
    async with Storage.open(make_settings(s3_fast_path=False, **common)) as storage:
        assert storage.fast is None
        key = "dir/ü ~+%#?=&.bin"
        etag = await storage.put(
            bucket, key, b"payload", content_type="text/x-test", checksum_crc32="QixqFQ==", metadata={"s3gate": "1"}
        )
        head = await storage.head(bucket, key)
        assert head.etag == etag and head.size == 7 and head.content_type == "text/x-test"
        download = await storage.get(bucket, key, byte_range=(2, 4))
        async with download.body as body:
            assert await body.read() == b"ylo"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"payload"


def test_setting_is_read_from_the_environment():
    from s3gate import settings as settings_mod

    assert settings_mod.load({}, use_file=False).s3_fast_path is True
    assert settings_mod.load({"S3GATE_S3_FAST_PATH": "false"}, use_file=False).s3_fast_path is False
