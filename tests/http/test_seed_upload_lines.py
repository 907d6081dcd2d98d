"""The seed's upload prints exactly one line per stored file (scripts read it line by line).

Found by mutation testing (bench/mutation.sh seed): the checks elsewhere
looked only at the start of the answer, so a changed separator or end of line
went unnoticed.
"""

import hashlib

import aiohttp


async def test_one_line_per_file_and_a_final_newline(client, bucket, s3):
    form = aiohttp.FormData()
    files = {"a.txt": b"first", "b.txt": b"second file"}
    for name, data in files.items():
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
    resp = await client.post(f"/uploads3/{bucket}", data=form)
    assert resp.status == 201
    assert await resp.text() == "".join(
        f"uploaded {name} ({len(data)} bytes) sha256={hashlib.sha256(data).hexdigest()}\n"
        for name, data in files.items()
    )
    for name, data in files.items():
        assert s3.get_object(Bucket=bucket, Key=name)["Body"].read() == data
