"""Tar streams in, the thread side (s3gate.storage.untar): decompression bounded in memory, trailers checked.

Real compressors (the standard library's, and the `xz` program for the
dictionary sizes presets never use). Memory is measured with tracemalloc
(every bytes object the decompressors return is a Python allocation), never
with timing.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import tarfile
import tracemalloc

import pytest

from s3gate.errors import BadRequest, PayloadTooLarge
from s3gate.storage import untar

MiB = 1024 * 1024
ZEROS = 64 * MiB


def zero_member_tar(size: int, compress) -> bytes:
    """A tar holding one file of ``size`` zero bytes, compressed as a stream (without ever holding it whole)."""
    info = tarfile.TarInfo("zeros.bin")
    info.size = size
    parts = [compress.compress(info.tobuf(tarfile.PAX_FORMAT))]
    block = bytes(MiB)
    left = size + (-size % tarfile.BLOCKSIZE) + 2 * tarfile.BLOCKSIZE  # the data, padding, end-of-archive
    left += -(tarfile.BLOCKSIZE + left) % tarfile.RECORDSIZE
    while left:
        n = min(left, len(block))
        parts.append(compress.compress(block[:n]))
        left -= n
    parts.append(compress.flush())
    return b"".join(parts)


def pieces(data: bytes, size: int = 64 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read_all(data: bytes, **limits) -> list[object]:
    """The events of untar.entries with member bytes counted, not kept."""
    events: list[object] = []
    count = 0
    for event in untar.entries(pieces(data), prefix="in/", max_members=10, max_bytes=1 << 40, **limits):
        if isinstance(event, bytes):
            count += len(event)
        else:
            events.append(event if not isinstance(event, untar.End) else ("end", count))
    return events


BOMBS = {
    "bzip2": lambda: bz2.BZ2Compressor(9),  # 64 MiB of zeros in ~100 bytes
    "xz": lambda: lzma.LZMACompressor(preset=1),
    "gzip": lambda: __import__("zlib").compressobj(9, 8, 16 + 15),
}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_a_decompression_bomb_is_read_piece_by_piece(kind):
    data = zero_member_tar(ZEROS, BOMBS[kind]())
    assert untar.compression(data[: untar.HEAD]) == kind
    tracemalloc.start()
    try:
        events = read_all(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == [untar.Begin("zeros.bin", "in/zeros.bin", ZEROS), ("end", ZEROS)]
    # A few pieces, whatever the ratio: tarfile's own reader asked bzip2 for all
    # 64 MiB at once (and 500 bytes of bzip2 hold 500 MB).
    assert peak < 4 * MiB, f"{peak / MiB:.1f} MiB held while reading {ZEROS // MiB} MiB of {kind}"


def small_tar() -> bytes:
    return zero_member_tar(1000, _Plain())


class _Plain:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def xz(data: bytes, *options: str) -> bytes:
    return subprocess.run(["xz", "-c", *options], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("dictionary", ["65MiB", "256MiB", "1536MiB"])
def test_xz_with_a_dictionary_beyond_the_limit_is_refused_before_it_is_allocated(dictionary):
    data = xz(small_tar(), f"--lzma2=dict={dictionary}")
    with pytest.raises(PayloadTooLarge, match="xz dictionary too large"):
        read_all(data)


@pytest.mark.parametrize("options", [["-9e"], ["--lzma2=dict=64MiB"], ["-6"], ["--format=lzma"]])
def test_every_xz_preset_fits_the_limit(options):
    # -9e (64 MiB dictionary, 65 MiB to decode) is the edge: within XZ_MEMORY_LIMIT.
    assert read_all(xz(small_tar(), *options))[-1] == ("end", 1000)


def corrupt(data: bytes, at: int) -> bytes:
    damaged = bytearray(data)
    damaged[at] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize("where, words", [(-8, "incorrect data check"), (-1, "incorrect length check")])
def test_a_damaged_gzip_trailer_is_an_error_never_a_quiet_end(where, words):
    data = gzip.compress(small_tar())
    assert read_all(data)[-1] == ("end", 1000)  # the undamaged control
    with pytest.raises(BadRequest, match=words):
        read_all(corrupt(data, where))


def test_a_damaged_bzip2_or_xz_check_is_an_error():
    for data in (bz2.compress(small_tar()), lzma.compress(small_tar())):
        # bzip2's combined CRC near its end; xz's index, just before its 12-byte footer.
        damaged = corrupt(data, -14 if data.startswith(b"\xfd7zXZ") else -3)
        with pytest.raises(BadRequest):
            read_all(damaged)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_streams_in_a_row_are_one_archive(compress):
    # pigz -i, pbzip2 and parallel xz write several streams one after another; gzip(1), bzip2(1) and xz(1) read them all.
    tar = zero_member_tar(300_000, _Plain())
    cut = len(tar) // 3
    data = compress(tar[:cut]) + compress(tar[cut:])
    assert read_all(data)[-1] == ("end", 300_000)
    with pytest.raises(BadRequest, match="truncated"):
        read_all(data[:-5])


def test_zstd_is_named_not_taken_for_garbage():
    with pytest.raises(BadRequest, match="zstd"):
        read_all(b"\x28\xb5\x2f\xfd" + bytes(1000))
