"""Part bodies that reach the socket without being copied.

botocore turns a ``bytes`` body into ``io.BytesIO``; aiohttp then calls
``getbuffer()`` on it, which un-shares the buffer: one full copy of every
part in flight. And asyncio (Python 3.11) copies whatever a single large
``transport.write`` could not send at once. Measured: +32 MiB of Python
allocations for one 32 MiB part.

``PartBody`` is neither bytes nor a file, so botocore leaves it alone (it only
needs ``len()``); the aiohttp payload registered for it writes memoryview
slices, each drained before the next, so nothing but the part itself is held.
"""

from __future__ import annotations

from typing import Any

from aiohttp import payload
from aiohttp.abc import AbstractStreamWriter

SLICE = 256 * 1024


class PartBody:
    """A part for botocore: sized, file-like enough to pass its validation and retries."""

    __slots__ = ("_pos", "data")

    def __init__(self, data: bytes | memoryview):
        self.data = data
        self._pos = 0

    def __len__(self) -> int:
        return len(self.data)

    # botocore validates that a body is bytes or has read(), and seeks back
    # before a retry. Sending never calls read(): the payload below does.
    def read(self, amt: int = -1) -> bytes:
        end = len(self.data) if amt is None or amt < 0 else self._pos + amt
        chunk = bytes(self.data[self._pos : end])
        self._pos += len(chunk)
        return chunk

    def seek(self, pos: int, whence: int = 0) -> int:
        self._pos = pos if whence == 0 else (self._pos + pos if whence == 1 else len(self.data) + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos


class PartPayload(payload.Payload):
    _value: PartBody

    def __init__(self, value: PartBody, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("content_type", "application/octet-stream")
        super().__init__(value, *args, **kwargs)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value.data).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return bytes(self._value.data)

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        view = memoryview(self._value.data)
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, len(view), SLICE):
            await writer.write(view[start : start + SLICE])  # drains above 64 KiB buffered


payload.PAYLOAD_REGISTRY.register(PartPayload, PartBody)
