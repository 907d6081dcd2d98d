"""Listing cursors are opaque and bound to their listing and caller (issue 7, item 4)."""

from __future__ import annotations

import base64
import os

import pytest

from s3gate.errors import BadRequest
from s3gate.http.cursors import CursorBox

BOUND = {"bucket": "files", "prefix": "", "recursive": False, "caller": "alice"}


def raw(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def test_a_cursor_round_trips_and_hides_its_token():
    box = CursorBox(os.urandom(32))
    token = "docs-private/salaries.xlsx"
    cursor = box.seal(token, **BOUND)
    assert box.open(cursor, **BOUND) == token
    assert b"salaries" not in raw(cursor) and b"docs-private" not in raw(cursor)
    # Same token, fresh nonce: two cursors never look alike.
    assert box.seal(token, **BOUND) != cursor
    # Lengths are padded: a short and a longer key give cursors of one size.
    assert len(box.seal("a", **BOUND)) == len(box.seal("a" * 100, **BOUND))


@pytest.mark.parametrize(
    "other",
    [
        {"bucket": "other"},
        {"prefix": "docs/"},
        {"recursive": True},
        {"caller": "bob"},
        {"caller": ""},  # anonymous
    ],
)
def test_a_cursor_opens_only_for_its_listing_and_caller(other):
    box = CursorBox(os.urandom(32))
    cursor = box.seal("k/0500", **BOUND)
    with pytest.raises(BadRequest):
        box.open(cursor, **{**BOUND, **other})


def test_altered_or_foreign_cursors_are_refused():
    box = CursorBox(os.urandom(32))
    cursor = box.seal("k/0500", **BOUND)
    flipped = bytearray(raw(cursor))
    flipped[-1] ^= 1
    forged = base64.urlsafe_b64encode(bytes(flipped)).decode().rstrip("=")
    for bad in (forged, CursorBox(os.urandom(32)).seal("k/0500", **BOUND), "!!!", "", "AAAA"):
        with pytest.raises(BadRequest):
            box.open(bad, **BOUND)
