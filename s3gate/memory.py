"""Give freed upload buffers back to the OS.

glibc serves large allocations with mmap, but raises that threshold after
each large free (its "dynamic mmap threshold"): after the first 8 MiB part is
freed, later parts come from the heap and a worker's RSS stays at its
high-water mark. Pinning the threshold keeps part buffers in mmap, returned on
free, so RSS follows the memory budget instead of ratcheting up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("s3gate")

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def pin_mmap_threshold(threshold: int = 1024 * 1024) -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to pin
        log.debug("mallopt unavailable; RSS may stay at its high-water mark")
        return False
