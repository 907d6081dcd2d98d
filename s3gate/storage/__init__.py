"""The S3 room: an aiobotocore adapter. Never imports aiohttp.web."""
