"""A lean S3 client for the hot, simple calls: GetObject, HeadObject, PutObject.

botocore spends ~1.7 ms of CPU on every call (event hooks, model-driven
serialisation, user-agent assembly); signing a request by hand and sending it
with aiohttp costs ~0.35 ms (measured here: bench/README.md). For 64 KiB
objects that is the difference between the gateway and S3 being the limit.
Everything else (multipart, listings, deletes, presigning, AWS credential
chains) stays with botocore, and credentials always come from botocore's
resolver, so instance roles and refreshes keep working.

SigV4 as documented by AWS ("Signature Version 4 signing process", S3
"Authenticating Requests: Using the Authorization Header"), with
UNSIGNED-PAYLOAD: bodies are protected by the CRC32 we send instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import botocore.exceptions
from botocore.auth import SIGNED_HEADERS_BLACKLIST
from yarl import URL

UNSIGNED = "UNSIGNED-PAYLOAD"
_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_RETRY_STATUS = (500, 502, 503, 504)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class FastS3:
    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        addressing: str,
        credentials: Any,
        session: aiohttp.ClientSession,
        observe: Callable[[str, float, int | None], None] | None = None,
    ):
        url = URL(endpoint)
        self._observe = observe  # the metrics hook, as storage.s3 gives botocore's calls
        self.scheme = url.scheme
        self.authority = url.raw_authority  # host[:port] exactly as sent in Host
        self.region = region
        # No bucket.<IP address> host names: botocore stays path-style there too.
        self.virtual = addressing == "virtual" and not _is_ip(url.host or "")
        self._credentials = credentials  # botocore/aiobotocore credentials object
        self.session = session
        self._keys: dict[tuple[str, str], bytes] = {}

    # -- signing -----------------------------------------------------------
    def _signing_key(self, secret: str, date: str) -> bytes:
        cached = self._keys.get((secret, date))
        if cached is None:
            k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
            for part in (self.region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._keys = {(secret, date): k}  # one day's key; drop older ones
            cached = k
        return cached

    def _target(self, bucket: str, key: str) -> tuple[str, str]:
        path_key = quote(key, safe="/~")
        if self.virtual and "." not in bucket:
            return f"{bucket}.{self.authority}", f"/{path_key}"
        return self.authority, f"/{bucket}/{path_key}"

    async def _signed(self, method: str, host: str, path: str, headers: dict[str, str]) -> dict[str, str]:
        creds = await self._credentials.get_frozen_credentials()
        now = dt.datetime.now(dt.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        # Sign every header we send, as botocore's S3SigV4Auth does for the same
        # request (tests/storage/test_fast_sigv4.py holds the two side by side):
        # S3 requires Content-Type signed when present, not just host and x-amz-*
        # ("Signature Calculations for the Authorization Header", CanonicalHeaders).
        out: dict[str, str] = {}
        signed: dict[str, str] = {}
        for name, value in headers.items():
            if name.lower() in SIGNED_HEADERS_BLACKLIST:
                out[name] = value
            else:
                signed[name.lower()] = value
        signed.update({"host": host, "x-amz-content-sha256": UNSIGNED, "x-amz-date": amz_date})
        if creds.token:
            signed["x-amz-security-token"] = creds.token
        names = sorted(signed)
        canonical = "\n".join(
            (
                method,
                path,
                "",
                "".join(f"{n}:{' '.join(str(signed[n]).split())}\n" for n in names),
                ";".join(names),
                UNSIGNED,
            )
        )
        scope = f"{date}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))
        signature = hmac.new(self._signing_key(creds.secret_key, date), to_sign.encode(), hashlib.sha256).hexdigest()
        out.update({("Host" if n == "host" else n): signed[n] for n in names})
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return out

    async def request(
        self,
        method: str,
        bucket: str,
        key: str,
        operation: str,
        *,
        headers: dict[str, str] | None = None,
        data: Any = None,
    ) -> aiohttp.ClientResponse:
        """Send one signed request; S3 errors come back as botocore ClientErrors
        (so storage.s3.translate maps them like every other call). One retry on
        a dropped connection or a 5xx, as botocore's standard mode would."""
        if self._observe is None:
            return await self._request(method, bucket, key, operation, headers, data)
        started = time.monotonic()
        try:
            resp = await self._request(method, bucket, key, operation, headers, data)
        except botocore.exceptions.ClientError as exc:  # S3 answered with an error
            self._observe(operation, time.monotonic() - started, exc.response["ResponseMetadata"]["HTTPStatusCode"])
            raise
        except Exception:  # no answer (a cancelled call is no S3 failure: not counted, as with botocore)
            self._observe(operation, time.monotonic() - started, None)
            raise
        self._observe(operation, time.monotonic() - started, resp.status)
        return resp

    async def _request(
        self, method: str, bucket: str, key: str, operation: str, headers: dict[str, str] | None, data: Any
    ) -> aiohttp.ClientResponse:
        host, path = self._target(bucket, key)
        url = URL.build(scheme=self.scheme, authority=host, path=path, encoded=True)
        for attempt in (1, 2):
            sent = await self._signed(method, host, path, dict(headers or {}))
            try:
                resp = await self.session.request(method, url, headers=sent, data=data, allow_redirects=False)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt == 2:
                    raise botocore.exceptions.EndpointConnectionError(endpoint_url=str(url), error=exc) from None
                continue
            except aiohttp.ClientConnectorError as exc:
                raise botocore.exceptions.EndpointConnectionError(endpoint_url=str(url), error=exc) from None
            if resp.status < 300 or resp.status == 304:
                return resp
            body = b"" if method == "HEAD" else await resp.read()
            resp.release()
            if resp.status in _RETRY_STATUS and attempt == 1:
                await asyncio.sleep(0.05)
                continue
            match = _CODE.search(body)
            code = match.group(1).decode() if match else str(resp.status)
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": code, "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": resp.status}},
                operation,
            )
        raise AssertionError("unreachable")


def parse_object_headers(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """What botocore would have parsed from a Get/HeadObject response."""
    h = resp.headers
    out: dict[str, Any] = {
        "ContentLength": int(h.get("Content-Length", 0)),
        "ETag": h.get("ETag", ""),
        "ContentType": h.get("Content-Type", "application/octet-stream"),
        "Metadata": {k[11:].lower(): v for k, v in h.items() if k.lower().startswith("x-amz-meta-")},
    }
    modified = h.get("Last-Modified")
    out["LastModified"] = email.utils.parsedate_to_datetime(modified) if modified else dt.datetime.now(dt.UTC)
    if "Content-Range" in h:
        out["ContentRange"] = h["Content-Range"]
    return out


class ResponseBody:
    """The part of botocore's StreamingBody the download path uses."""

    def __init__(self, resp: aiohttp.ClientResponse):
        self._resp = resp

    async def __aenter__(self) -> ResponseBody:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._resp.release()

    async def read(self) -> bytes:
        return await self._resp.read()

    async def iter_chunks(self, chunk_size: int):
        async for chunk in self._resp.content.iter_chunked(chunk_size):
            yield chunk

    def close(self) -> None:
        self._resp.close()
