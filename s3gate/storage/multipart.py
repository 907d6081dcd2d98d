"""S3 multipart calls for resumable uploads (s3gate/http/resumable.py), part by part.

Unlike ObjectWriter's uploads, which live for one request, these outlive
every request: a client sends part N whenever it likes, again if it likes,
and S3 itself is asked which parts it holds. So the parts carry
``Content-MD5`` (RFC 1864), not a flexible checksum: S3 verifies it on
arrival (SeaweedFS answers BadDigest; moto does not check, which is why the
gateway also checks what the client sent while the part streams in) and
ListParts gives back each part's MD5 as its ETag on every store, where
per-part CRC32s are not listed by SeaweedFS or moto and could not be
handed back to CompleteMultipartUpload.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from ..errors import NotFound, PreconditionFailed
from .body import PartBody
from .s3 import Storage, translate

# ListParts answers at most 1,000 parts a page (S3 API reference).
LIST_PAGE = 1000


class NoSuchUpload(NotFound):
    code, default_message = "no_such_upload", "the multipart upload is gone (completed, aborted or expired)"


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str  # with quotes, as S3 gives it: the part's MD5 in hex on every store seen
    modified: dt.datetime | None


def _gone(exc: botocore.exceptions.ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "NoSuchUpload"


async def create(storage: Storage, bucket: str, key: str, *, content_type: str, metadata: dict[str, str]) -> str:
    with translate(bucket, key):
        resp = await storage.client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type, Metadata=metadata
        )
    return resp["UploadId"]


async def upload_part(storage: Storage, bucket: str, key: str, upload_id: str, number: int, data, md5: bytes) -> str:
    """Send one part with its Content-MD5; sending a number again replaces that part. Returns its ETag."""
    with translate(bucket, key):
        try:
            resp = await storage.client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=PartBody(data),
                ContentMD5=base64.b64encode(md5).decode(),
            )
        except botocore.exceptions.ClientError as exc:
            if _gone(exc):
                raise NoSuchUpload() from None
            raise
    return resp["ETag"]


async def list_parts(storage: Storage, bucket: str, key: str, upload_id: str) -> dict[int, Part]:
    """The parts S3 holds, by number: the latest one where a number was sent more than once.

    SeaweedFS (4.48) lists every upload of a re-sent part number, each with
    its own ETag, and completes with whichever ETag it is given: the newest is
    the one that replaced the others (S3's semantics), so that one is kept.
    """
    parts: dict[int, Part] = {}
    marker: Any = None
    while True:
        page: dict[str, Any] = {"PartNumberMarker": marker} if marker else {}
        with translate(bucket, key):
            try:
                resp = await storage.client.list_parts(
                    Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=LIST_PAGE, **page
                )
            except botocore.exceptions.ClientError as exc:
                if _gone(exc):
                    raise NoSuchUpload() from None
                raise
        for raw in resp.get("Parts", []):
            part = Part(int(raw["PartNumber"]), int(raw.get("Size", 0)), raw.get("ETag", ""), raw.get("LastModified"))
            seen = parts.get(part.number)
            if seen is None or (part.modified and seen.modified and part.modified > seen.modified):
                parts[part.number] = part
        following = resp.get("NextPartNumberMarker")
        if not resp.get("IsTruncated") or not following or str(following) == str(marker):
            return parts
        marker = following


async def versions(
    storage: Storage, bucket: str, key: str, upload_id: str, number: int
) -> tuple[list[Part], dt.datetime | None]:
    """What S3 lists for one part number (several entries on SeaweedFS after re-sends), and S3's clock."""
    with translate(bucket, key):
        try:
            resp = await storage.client.list_parts(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MaxParts=16,
                **({"PartNumberMarker": number - 1} if number > 1 else {}),
            )
        except botocore.exceptions.ClientError as exc:
            if _gone(exc):
                raise NoSuchUpload() from None
            raise
    found = [
        Part(int(raw["PartNumber"]), int(raw.get("Size", 0)), raw.get("ETag", ""), raw.get("LastModified"))
        for raw in resp.get("Parts", [])
        if int(raw["PartNumber"]) == number
    ]
    date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        now = email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        now = None
    return found, now


async def before_replacing(storage: Storage, bucket: str, key: str, upload_id: str, number: int, md5: bytes) -> None:
    """Make sure a part sent again with other bytes is the newest of its number by S3's own clock.

    Where a store lists every upload of a part number (SeaweedFS), only
    LastModified tells the replacement from what it replaces, and it counts
    whole seconds: a replacement sent within the second of the part it
    replaces would be indistinguishable. So it waits out that second (by the
    Date S3 answered with, whatever this machine's clock says). Re-sending the
    same bytes (a retry) never waits: either copy is right.
    """
    found, s3_now = await versions(storage, bucket, key, upload_id, number)
    others = [p for p in found if p.etag.strip('"') != md5.hex() and p.modified is not None]
    if not others:
        return
    latest = max(p.modified for p in others if p.modified is not None)
    if s3_now is None or latest >= s3_now.replace(microsecond=0):
        await asyncio.sleep(1.0)


async def complete(
    storage: Storage, bucket: str, key: str, upload_id: str, parts: list[Part], *, if_none_match: bool
) -> str:
    """Make the object. ``if_none_match``: only if the key does not exist (412 otherwise, the upload stays open)."""
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "UploadId": upload_id,
        "MultipartUpload": {"Parts": [{"PartNumber": p.number, "ETag": p.etag} for p in parts]},
    }
    if if_none_match:
        params["IfNoneMatch"] = "*"  # honoured by AWS, SeaweedFS and moto: atomic, unlike a HEAD first
    with translate(bucket, key):
        try:
            resp = await storage.client.complete_multipart_upload(**params)
        except botocore.exceptions.ClientError as exc:
            if _gone(exc):
                raise NoSuchUpload() from None
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                raise PreconditionFailed(f"{key} already exists") from None
            raise
    etag = resp.get("ETag") or ""
    return etag if etag.startswith('"') else f'"{etag}"'
