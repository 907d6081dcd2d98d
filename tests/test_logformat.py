"""The text log line is exactly the standard library's, however its date is made."""

import logging

from s3gate.logformat import TEXT_FORMAT, formatter


def record(created: float, msg: str = "GET /files/x 200") -> logging.LogRecord:
    r = logging.LogRecord("s3gate.access", logging.INFO, __file__, 1, msg, None, None)
    r.created, r.msecs = created, int((created - int(created)) * 1000)
    return r


def test_text_lines_equal_the_standard_formatter_across_seconds():
    ours, standard = formatter("text"), logging.Formatter(TEXT_FORMAT)
    base = 1_796_000_000.0  # one second after another, and back again (a clock step)
    for created in (base, base + 0.001, base + 0.999, base + 1.0, base + 1.5, base + 61.25, base + 3600.75, base + 0.5):
        r = record(created)
        assert ours.format(r) == standard.format(r), created
