"""Permission rules: (bucket, key prefix, actions). Deny by default.

A rule's prefix is a *folder*: ``docs`` and ``docs/`` both mean "everything
under docs/", and never ``docs-private/...``. The empty prefix is the whole
bucket; bucket ``*`` is every bucket.

Two kinds of question are asked:

- "may I do ACTION on this key?" — the key must lie inside a rule granting
  ACTION (containment);
- "may I list this folder?" (action ``list`` on ``""`` or a key ending in
  ``/``) — allowed when the folder overlaps a listable area, so a user granted
  only ``docs/a/`` can still open the bucket root and ``docs/`` to walk down to
  it. Every entry shown must then pass the check on its own, which the
  listing handlers do (``access.allowed`` per object and per folder).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ACTIONS = ("read", "list", "write", "delete")
ALL_BUCKETS = "*"
_BUCKET_RE = re.compile(r"^(\*|[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])$")
_SHORT = {"r": "read", "l": "list", "w": "write", "d": "delete"}


class RuleError(ValueError):
    """A rule or target that cannot be parsed; the message says why."""


def normalize_prefix(prefix: str) -> str:
    """``docs`` -> ``docs/``; ``/docs/`` -> ``docs/``; ``""`` stays the whole bucket."""
    prefix = prefix.strip().lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if any(seg in (".", "..") for seg in prefix.split("/")):
        raise RuleError(f"prefix {prefix!r} may not contain '.' or '..' segments")
    if "//" in prefix:
        raise RuleError(f"prefix {prefix!r} contains an empty segment")
    return prefix


def parse_actions(text: str) -> frozenset[str]:
    """``read,list`` / ``all`` / ``rl`` -> a set of actions."""
    text = text.strip().lower()
    if text in ("all", "*"):
        return frozenset(ACTIONS)
    words = [w.strip() for w in text.replace("+", ",").split(",") if w.strip()]
    if len(words) == 1 and words[0] not in ACTIONS and set(words[0]) <= set(_SHORT):
        words = [_SHORT[c] for c in words[0]]
    unknown = [w for w in words if w not in ACTIONS]
    if unknown or not words:
        raise RuleError(f"unknown action(s) {', '.join(unknown) or text!r}: use {', '.join(ACTIONS)} or all")
    return frozenset(words)


def format_actions(actions: Iterable[str]) -> str:
    acts = set(actions)
    return "all" if acts == set(ACTIONS) else ",".join(a for a in ACTIONS if a in acts)


def parse_target(text: str) -> tuple[str, str]:
    """``BUCKET[/PREFIX]`` -> (bucket, normalized prefix)."""
    text = text.strip()
    bucket, _, prefix = text.partition("/")
    if not _BUCKET_RE.match(bucket):
        raise RuleError(f"invalid bucket {bucket!r}: an S3 bucket name or *")
    return bucket, normalize_prefix(prefix)


@dataclass(frozen=True)
class Rule:
    bucket: str
    prefix: str
    actions: frozenset[str]

    @classmethod
    def make(cls, bucket: str, prefix: str, actions: Iterable[str] | str) -> Rule:
        acts = parse_actions(actions) if isinstance(actions, str) else frozenset(actions)
        if not acts or not acts <= set(ACTIONS):
            raise RuleError(f"bad actions {sorted(acts)}")
        if not _BUCKET_RE.match(bucket):
            raise RuleError(f"invalid bucket {bucket!r}: an S3 bucket name or *")
        return cls(bucket, normalize_prefix(prefix), acts)

    @classmethod
    def parse(cls, text: str) -> Rule:
        """``BUCKET[/PREFIX]:ACTIONS`` (the form used by --scope and the ``public`` setting)."""
        target, sep, actions = text.strip().rpartition(":")
        if not sep or not target:
            raise RuleError(f"expected BUCKET[/PREFIX]:ACTIONS, got {text!r}")
        bucket, prefix = parse_target(target)
        return cls(bucket, prefix, parse_actions(actions))

    def __str__(self) -> str:
        return f"{self.target}:{format_actions(self.actions)}"

    @property
    def target(self) -> str:
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def _bucket_ok(self, bucket: str) -> bool:
        return self.bucket == ALL_BUCKETS or self.bucket == bucket

    def covers(self, action: str, bucket: str, key: str) -> bool:
        """Does this rule let ``action`` touch ``key`` (or every key under it, if it ends in '/')?"""
        if action not in self.actions or not self._bucket_ok(bucket):
            return False
        if not self.prefix:
            return True
        if _unsafe_key(key):
            # S3 keeps 'docs/../x' literally, but some stores resolve it: only
            # whole-bucket rules may touch such keys.
            return False
        return key.startswith(self.prefix)

    def overlaps(self, action: str, bucket: str, folder: str) -> bool:
        """Does this rule grant ``action`` on anything at or below ``folder``?"""
        if action not in self.actions or not self._bucket_ok(bucket):
            return False
        if _unsafe_key(folder):
            return not self.prefix
        return folder.startswith(self.prefix) or self.prefix.startswith(folder)

    def within(self, other: Rule) -> bool:
        """Is everything this rule grants also granted by ``other``?"""
        if not self.actions <= other.actions:
            return False
        if other.bucket != ALL_BUCKETS and other.bucket != self.bucket:
            return False
        return self.prefix.startswith(other.prefix)


def _unsafe_key(key: str) -> bool:
    return any(seg in (".", "..") for seg in key.split("/"))


def is_folder(key: str) -> bool:
    return key == "" or key.endswith("/")


def grants(rules: Iterable[Rule], action: str, bucket: str, key: str) -> bool:
    """Deny by default: True only when some rule allows it."""
    if action == "list" and is_folder(key):
        return any(r.overlaps(action, bucket, key) for r in rules)
    return any(r.covers(action, bucket, key) for r in rules)


def subset(scope: Iterable[Rule], rules: Iterable[Rule]) -> list[str]:
    """What in ``scope`` is not granted by ``rules`` (as 'target:action' strings); [] = a subset.

    Each action of each scope rule must be granted by a single rule covering
    the scope's whole area (a union of narrower rules is not enough: the
    scope rule grants the whole area to the token).
    """
    rules = list(rules)
    missing = []
    for s in scope:
        for action in sorted(s.actions):
            one = Rule(s.bucket, s.prefix, frozenset([action]))
            if not any(one.within(r) for r in rules):
                missing.append(f"{s.target}:{action}")
    return missing


def merge(rules: Iterable[Rule]) -> list[Rule]:
    """One rule per (bucket, prefix), actions united; stable order."""
    out: dict[tuple[str, str], set[str]] = {}
    for r in rules:
        out.setdefault((r.bucket, r.prefix), set()).update(r.actions)
    return [Rule(b, p, frozenset(a)) for (b, p), a in out.items()]
