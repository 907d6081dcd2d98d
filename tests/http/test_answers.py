"""The REST face's answers, field by field: what scripts parse after an upload or a delete.

Found by mutation testing (bench/mutation.sh files): a renamed JSON field or a
missing ETag header went unnoticed, as the other tests read only some fields.
"""

import hashlib

import aiohttp


def upload_json(bucket: str, key: str, data: bytes) -> dict:
    return {
        "bucket": bucket,
        "key": key,
        "size": len(data),
        "etag": hashlib.md5(data).hexdigest(),  # a single-part upload: the MD5
        "sha256": hashlib.sha256(data).hexdigest(),
    }


async def test_put_answers_every_field_and_the_etag_header(client, bucket, s3):
    data = b"answer me"
    resp = await client.put(f"/files/{bucket}/docs/a.txt", data=data)
    assert resp.status == 201
    assert await resp.json() == upload_json(bucket, "docs/a.txt", data)
    stored = s3.head_object(Bucket=bucket, Key="docs/a.txt")
    assert resp.headers["ETag"] == stored["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert resp.headers["X-Checksum-Sha256"] == hashlib.sha256(data).hexdigest()


async def test_form_answers_every_field_of_every_file(client, bucket):
    files = {"a.txt": b"one", "b.txt": b"two two"}
    form = aiohttp.FormData()
    for name, data in files.items():
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
    resp = await client.post(f"/files/{bucket}/docs/", data=form)
    assert resp.status == 201
    assert await resp.json() == {"uploaded": [upload_json(bucket, f"docs/{n}", d) for n, d in files.items()]}


async def test_delete_answers_key_and_bucket(client, bucket, s3):
    s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"x")
    resp = await client.delete(f"/files/{bucket}/docs/a.txt")
    assert resp.status == 200
    assert await resp.json() == {"deleted": "docs/a.txt", "bucket": bucket}
