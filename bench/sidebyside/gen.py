"""N pseudo-random bytes to stdout, for ``generator | curl -T -`` (``bench/run.py _gen N``).

Only the standard library: a crowd of 32 starts at once, and each one's start-up is the client's CPU.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys

MiB = 1024 * 1024


def generate(n: int) -> None:
    """Write n pseudo-random bytes to stdout."""
    fd = sys.stdout.fileno()
    with contextlib.suppress(OSError):
        import fcntl

        fcntl.fcntl(fd, 1031, 1 * MiB)  # F_SETPIPE_SZ
    block = random.Random(n).randbytes(4 * MiB)
    mv = memoryview(block)
    off = 0
    while n > 0:
        k = min(n, len(block) - off, 1 * MiB)
        written = os.write(fd, mv[off : off + k])
        n -= written
        off = (off + written) % len(block)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # reader gone: just stop
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    generate(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
