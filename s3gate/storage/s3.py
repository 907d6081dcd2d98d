"""The S3 adapter: one aiobotocore client per worker, domain errors out.

Client configuration follows what works against AWS, SeaweedFS, MinIO and
moto alike (see FIELD-NOTES): no default flexible checksums (several stores
reject them; we send our own Content-MD5 per part instead), no payload
signing (bodies are bytes we already hash), SigV4 for presigned URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.credentials import AioCredentials
from aiobotocore.session import get_session

from ..errors import (
    BadRequest,
    ChecksumMismatch,
    GatewayError,
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)
from ..settings import Settings
from .body import PartBody
from .fast import FastS3, ResponseBody, parse_object_headers

log = logging.getLogger("s3gate.storage")

# Metadata key s3gate sets on every object it writes: lets the stale-upload
# sweeper and operators tell our objects from others'.
UPLOADER_TAG = "s3gate"
# DeleteObjects takes at most 1,000 keys per call (S3 API reference).
DELETE_BATCH = 1000


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # with quotes, as HTTP wants it
    last_modified: dt.datetime
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Download:
    info: ObjectInfo
    body: Any  # aiobotocore StreamingBody; use `async with download.body`
    content_range: str | None


@dataclass(frozen=True)
class DeleteFailure:
    key: str
    code: str
    message: str


@dataclass(frozen=True)
class ListPage:
    objects: list[ObjectInfo]
    folders: list[str]
    next_token: str | None


def _client_config(settings: Settings, *, max_connections: int) -> AioConfig:
    return AioConfig(
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style, "payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=max_connections,
        connect_timeout=min(10.0, settings.s3_timeout),
        read_timeout=settings.s3_timeout,
        tcp_keepalive=True,
    )


def _client_kwargs(settings: Settings, endpoint: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"region_name": settings.s3_region}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if settings.s3_access_key:
        kwargs["aws_access_key_id"] = settings.s3_access_key
        kwargs["aws_secret_access_key"] = settings.s3_secret_key
    return kwargs


@contextlib.contextmanager
def translate(bucket: str | None = None, key: str | None = None):
    """Map botocore's failures to the gateway's domain errors."""
    try:
        yield
    except GatewayError:
        raise
    except botocore.exceptions.ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("NoSuchBucket",):
            raise NoSuchBucket() from None
        if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and key):
            raise NoSuchKey(f"no such key: {key}" if key else None) from None
        if status == 404 and bucket:
            raise NoSuchBucket() from None
        if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
            raise ChecksumMismatch() from None
        if code in ("PreconditionFailed",) or status == 412:
            raise PreconditionFailed() from None
        if code in ("InvalidBucketName",):
            raise BadRequest("invalid bucket name") from None
        if code in ("KeyTooLongError",):
            # The gateway already refuses keys over S3's 1,024 bytes; a store
            # refusing a shorter one limits each '/'-separated segment instead.
            longest = max((len(s.encode()) for s in (key or "").split("/")), default=0)
            raise BadRequest(
                f"the storage refused the key: a '/'-separated segment of {longest} bytes is over "
                "its limit per segment (255 bytes on MinIO and on SeaweedFS by default)"
            ) from None
        if code in ("EntityTooLarge",):
            raise BadRequest("object too large for the store") from None
        if status in (500, 503) or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            raise StorageUnavailable(f"storage unavailable ({code or status})") from None
        raise StorageError(f"storage refused the request ({code or status})") from None
    except (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectTimeoutError,
        botocore.exceptions.ReadTimeoutError,
        botocore.exceptions.ConnectionClosedError,
    ) as exc:
        log.warning("storage unreachable: %s", type(exc).__name__)
        raise StorageUnavailable("storage unreachable") from None
    except botocore.exceptions.NoCredentialsError:
        raise StorageError("gateway has no S3 credentials configured") from None
    except botocore.exceptions.BotoCoreError as exc:
        log.warning("storage failure: %s", exc)
        raise StorageError(f"storage failed ({type(exc).__name__})") from None
    except (TimeoutError, OSError, aiohttp.ClientError) as exc:  # the lean path's transport
        log.warning("storage connection error: %s", type(exc).__name__)
        raise StorageUnavailable("storage unreachable") from None


async def _credentials(session: Any, settings: Settings) -> Any:
    """The credentials botocore would sign with (explicit keys, or its resolver chain)."""
    if settings.s3_access_key:
        return AioCredentials(settings.s3_access_key, settings.s3_secret_key)
    try:
        return await session.get_credentials()
    except botocore.exceptions.BotoCoreError:
        return None


def _etag(raw: str | None) -> str:
    raw = raw or ""
    return raw if raw.startswith('"') or raw.startswith('W/"') else f'"{raw}"'


def _object_from_head(key: str, head: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=int(head.get("ContentLength", 0)),
        etag=_etag(head.get("ETag")),
        last_modified=head["LastModified"],
        content_type=head.get("ContentType") or "application/octet-stream",
        metadata=dict(head.get("Metadata") or {}),
    )


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """RFC 6266: an ASCII fallback plus the exact UTF-8 name (RFC 8187)."""
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_").replace("?", "_")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# The metrics hook: (operation, seconds, HTTP status from S3 or None when S3 did not answer).
CallObserver = Callable[[str, float, "int | None"], None]


def _watch_calls(client: Any, observe: CallObserver) -> None:
    """Report every botocore call of this client, once per call (retries included), through ``observe``.

    botocore's own events: ``before-call`` and ``after-call`` bracket one API
    call; ``after-call-error`` replaces the latter when no response came.
    """

    def before(model: Any, context: dict[str, Any], **_: Any) -> None:
        context["s3gate_call"] = (model.name, time.monotonic())

    def finished(context: dict[str, Any], status: int | None) -> None:
        started = context.pop("s3gate_call", None)
        if started is not None:
            observe(started[0], time.monotonic() - started[1], status)

    def after(http_response: Any, context: dict[str, Any], **_: Any) -> None:
        finished(context, http_response.status_code)

    def failed(context: dict[str, Any], **_: Any) -> None:
        finished(context, None)

    events = client.meta.events
    events.register("before-call.s3", before)
    events.register("after-call.s3", after)
    events.register("after-call-error.s3", failed)


async def _warm(session: Any, config: Any, kwargs: dict[str, Any]) -> None:
    """Create and drop one client on a thread, so the event loop never waits on the disk.

    botocore reads ~/.aws/config and its JSON models (~100 ms) while creating a
    client and caches them in the session: the real clients then find them there.
    """

    async def warm_on_thread() -> None:  # its own event loop, on its own thread: it serves nobody
        async with session.create_client("s3", config=config, **kwargs):
            pass

    await asyncio.to_thread(asyncio.run, warm_on_thread())


class Storage:
    """What the gateway needs from S3, with botocore errors translated."""

    def __init__(self, settings: Settings, client: Any, signer: Any, fast: FastS3 | None = None):
        self.settings = settings
        self.client = client
        self._signer = signer
        self.fast = fast  # the lean path for Get/Head/PutObject; None = botocore for all
        self._bucket_seen: dict[str, float] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, *, observe: CallObserver | None = None) -> AsyncIterator[Storage]:
        """``observe``: told of every S3 call (the app passes the metrics hook)."""
        session = get_session()
        config = _client_config(settings, max_connections=settings.s3_max_connections)
        await _warm(session, config, _client_kwargs(settings, settings.s3_endpoint))
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                session.create_client("s3", config=config, **_client_kwargs(settings, settings.s3_endpoint))
            )
            if observe is not None:
                _watch_calls(client, observe)
            signer = client
            if settings.s3_public_endpoint:
                # Presigned URLs carry the client's endpoint as host: sign with
                # a second client that knows the public name (never used for I/O).
                signer = await stack.enter_async_context(
                    session.create_client(
                        "s3",
                        config=_client_config(settings, max_connections=1),
                        **_client_kwargs(settings, settings.s3_public_endpoint),
                    )
                )
            fast = None
            credentials = await _credentials(session, settings)
            if settings.s3_fast_path and settings.s3_endpoint and credentials is not None:
                http = await stack.enter_async_context(
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=settings.s3_max_connections),
                        timeout=aiohttp.ClientTimeout(
                            sock_connect=min(10.0, settings.s3_timeout), sock_read=settings.s3_timeout
                        ),
                        auto_decompress=False,
                        skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent"),
                    )
                )
                fast = FastS3(
                    endpoint=settings.s3_endpoint,
                    region=settings.s3_region,
                    addressing=settings.s3_addressing_style,
                    credentials=credentials,
                    session=http,
                    observe=observe,
                )
            yield cls(settings, client, signer, fast)

    # -- buckets -----------------------------------------------------------
    async def list_buckets(self) -> list[dict[str, Any]]:
        with translate():
            resp = await self.client.list_buckets()
        return [
            {"name": b["Name"], "created": b.get("CreationDate").isoformat() if b.get("CreationDate") else None}
            for b in resp.get("Buckets", [])
        ]

    async def require_bucket(self, bucket: str) -> None:
        """404 NoSuchBucket unless the bucket exists. Positive answers are cached briefly."""
        seen = self._bucket_seen.get(bucket)
        now = time.monotonic()
        if seen is not None and now - seen < 10.0:
            return
        with translate(bucket):
            try:
                await self.client.head_bucket(Bucket=bucket)
            except botocore.exceptions.ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if status == 404:
                    raise NoSuchBucket() from None
                raise
        self._bucket_seen[bucket] = now

    async def ping(self) -> None:
        with translate():
            await self.client.list_buckets()

    # -- objects -----------------------------------------------------------
    async def _head_object(self, bucket: str, key: str) -> dict[str, Any]:
        if self.fast is None:
            return await self.client.head_object(Bucket=bucket, Key=key)
        resp = await self.fast.request("HEAD", bucket, key, "HeadObject")
        resp.release()
        return parse_object_headers(resp)

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        with translate(bucket, key):
            try:
                head = await self._head_object(bucket, key)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    # HEAD answers carry no error code: tell "no bucket" from "no key".
                    await self.require_bucket(bucket)
                    raise NoSuchKey(f"no such key: {key}") from None
                raise
        return _object_from_head(key, head)

    async def get(
        self, bucket: str, key: str, *, byte_range: tuple[int, int] | None = None, if_match: str | None = None
    ) -> Download:
        params: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if byte_range is not None:
            params["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        if if_match:
            params["IfMatch"] = if_match
        with translate(bucket, key):
            if self.fast is None:
                resp = await self.client.get_object(**params)
            else:
                headers = {"Range": params["Range"]} if "Range" in params else {}
                if if_match:
                    headers["If-Match"] = if_match
                raw = await self.fast.request("GET", bucket, key, "GetObject", headers=headers)
                resp = parse_object_headers(raw)
                resp["Body"] = ResponseBody(raw)
        info = _object_from_head(key, resp)
        content_range = resp.get("ContentRange")
        if content_range:
            # ContentLength of a ranged GET is the range's length; the object's
            # size is after the slash (RFC 9110 §14.4).
            info = dataclasses.replace(info, size=int(content_range.rsplit("/", 1)[1]))
        return Download(info=info, body=resp["Body"], content_range=content_range)

    async def put(
        self, bucket: str, key: str, data: bytes, *, content_type: str, checksum_crc32: str, metadata: dict[str, str]
    ) -> str:
        with translate(bucket, key):
            if self.fast is not None:
                headers = {
                    "Content-Type": content_type,
                    "Content-Length": str(len(data)),
                    "x-amz-checksum-crc32": checksum_crc32,
                    **{f"x-amz-meta-{k}": v for k, v in metadata.items()},
                }
                raw = await self.fast.request("PUT", bucket, key, "PutObject", headers=headers, data=PartBody(data))
                raw.release()
                return _etag(raw.headers.get("ETag"))
            resp = await self.client.put_object(
                Bucket=bucket,
                Key=key,
                Body=PartBody(data),
                ContentType=content_type,
                ChecksumCRC32=checksum_crc32,
                Metadata=metadata,
            )
        return _etag(resp.get("ETag"))

    async def delete(self, bucket: str, key: str) -> None:
        # S3 deletes are idempotent (204 for a missing key); the gateway tells
        # the user when there was nothing to delete, so look first.
        await self.head(bucket, key)
        with translate(bucket, key):
            await self.client.delete_object(Bucket=bucket, Key=key)

    async def delete_many(self, bucket: str, keys: list[str]) -> list[DeleteFailure]:
        """Delete keys with DeleteObjects, DELETE_BATCH at a time; the keys S3 refused, with its reason.

        A failure of a whole call (storage down) raises after the batches
        before it are done: callers report those as deleted.
        """
        failures: list[DeleteFailure] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with translate(bucket):
                resp = await self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            failures += [
                DeleteFailure(str(e.get("Key", "")), str(e.get("Code", "")), str(e.get("Message", "")))
                for e in resp.get("Errors", [])
            ]
        return failures

    async def list_page(
        self, bucket: str, *, prefix: str, delimiter: str | None, limit: int, token: str | None
    ) -> ListPage:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": limit}
        if delimiter:
            params["Delimiter"] = delimiter
        if token:
            params["ContinuationToken"] = token
        with translate(bucket):
            resp = await self.client.list_objects_v2(**params)
        objects = [
            ObjectInfo(
                key=o["Key"], size=int(o.get("Size", 0)), etag=_etag(o.get("ETag")), last_modified=o["LastModified"]
            )
            for o in resp.get("Contents", [])
        ]
        folders = [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        next_token = resp.get("NextContinuationToken") if resp.get("IsTruncated") else None
        return ListPage(objects, folders, next_token)

    # -- multipart -----------------------------------------------------------
    async def create_multipart(self, bucket: str, key: str, *, content_type: str, metadata: dict[str, str]) -> str:
        with translate(bucket, key):
            resp = await self.client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, Metadata=metadata, ChecksumAlgorithm="CRC32"
            )
        return resp["UploadId"]

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, data: bytes, crc32: str) -> str:
        # The store verifies each part against the CRC32 we computed (BadDigest otherwise).
        with translate(bucket, key):
            resp = await self.client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=PartBody(data), ChecksumCRC32=crc32
            )
        return resp["ETag"]

    async def complete_multipart(self, bucket: str, key: str, upload_id: str, etags: list[str], crcs: list[str]) -> str:
        parts = [
            {"PartNumber": i, "ETag": etag, "ChecksumCRC32": crc}
            for i, (etag, crc) in enumerate(zip(etags, crcs, strict=True), start=1)
        ]
        with translate(bucket, key):
            resp = await self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        return _etag(resp.get("ETag"))

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        with translate(bucket, key):
            try:
                await self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise

    # -- links -------------------------------------------------------------
    async def presign_get(self, bucket: str, key: str, *, expires: int, filename: str) -> str:
        params = {"Bucket": bucket, "Key": key, "ResponseContentDisposition": content_disposition(filename)}
        with translate(bucket, key):
            return await self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
