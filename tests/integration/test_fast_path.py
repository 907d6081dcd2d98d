"""The lean SigV4 path (Get/Head/PutObject) against a store that checks signatures."""

import pytest

from s3gate import keys
from s3gate.errors import StorageError
from s3gate.storage.s3 import Storage

pytestmark = pytest.mark.integration


async def test_hot_calls_use_the_lean_path_and_verify(gateway, bucket, store):
    storage = gateway.app[keys.STORAGE]
    assert storage.fast is not None
    key = "dir/ünï cødé+%#?.bin"
    etag = await storage.put(bucket, key, b"payload", content_type="text/x-test", checksum_crc32="QixqFQ==", metadata={"s3gate": "1"})
    head = await storage.head(bucket, key)
    assert head.etag == etag and head.size == 7 and head.content_type == "text/x-test"
    assert head.metadata == {"s3gate": "1"}
    download = await storage.get(bucket, key, byte_range=(2, 4), if_match=etag)
    async with download.body as body:
        assert await body.read() == b"ylo"
    assert download.info.size == 7 and download.content_range == "bytes 2-4/7"


async def test_wrong_crc_and_wrong_secret_are_refused(gateway_settings, bucket, seaweed):
    good = gateway_settings()
    async with Storage.open(good) as storage:
        with pytest.raises(Exception) as bad_crc:
            await storage.put(bucket, "a", b"payload", content_type="x", checksum_crc32="AAAAAA==", metadata={})
        assert bad_crc.value.__class__.__name__ == "ChecksumMismatch"
    wrong = gateway_settings(s3_secret_key="not-the-secret")
    async with Storage.open(wrong) as storage:
        with pytest.raises(StorageError, match="SignatureDoesNotMatch|AccessDenied"):
            await storage.put(bucket, "a", b"payload", content_type="x", checksum_crc32="QixqFQ==", metadata={})
        with pytest.raises(StorageError, match="SignatureDoesNotMatch|AccessDenied|403"):
            await storage.head(bucket, "a")


# Keys whose encoding a hand-made signer gets wrong first (RFC 3986 §2.3
# unreserved '~' stays literal, everything else reserved is percent-encoded).
TRICKY_KEYS = ("a~b/c+d=e&f", "sp  ace/100% sure?#frag", "ünï/日本語/😀.bin", "x//y///z", "~/(*)'!$@;:,[]")


@pytest.mark.parametrize("fast_path", [True, False])
async def test_tricky_keys_verify_on_a_checking_store_either_way(gateway_settings, bucket, seaweed, fast_path):
    """SeaweedFS checks every signature (moto does not): each key round-trips
    with the lean path and with s3_fast_path = false (botocore for every call)."""
    async with Storage.open(gateway_settings(s3_fast_path=fast_path)) as storage:
        assert (storage.fast is not None) is fast_path
        for key in TRICKY_KEYS:
            etag = await storage.put(
                bucket, key, b"payload", content_type="text/x-test", checksum_crc32="QixqFQ==", metadata={"s3gate": "1"}
            )
            head = await storage.head(bucket, key)
            assert (head.etag, head.size, head.content_type) == (etag, 7, "text/x-test"), key
            download = await storage.get(bucket, key, byte_range=(2, 4), if_match=etag)
            async with download.body as body:
                assert await body.read() == b"ylo", key
