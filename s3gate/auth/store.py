"""The users store: a small async interface, SQLite or PostgreSQL behind it.

Everything the auth room keeps goes through ``Store``: users, their rules,
API tokens, sessions and the brute-force counters. Secrets never reach it in
clear: passwords arrive as argon2id hashes, tokens and session ids as SHA-256
digests. ``sql.py`` implements it once for both databases (``database.py``);
``open_store`` picks the database from the ``users_db`` setting.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .rules import Rule

ANONYMOUS = "*"  # the pseudo-user whose rules everyone gets, without credentials


class StoreError(Exception):
    pass


class DuplicateUser(StoreError):
    pass


class NoSuchUser(StoreError):
    pass


@dataclass(frozen=True)
class User:
    id: int
    name: str
    password_hash: str | None  # None: cannot log in with a password (token-only, or '*')
    admin: bool
    disabled: bool
    created_at: float
    password_changed_at: float | None


@dataclass(frozen=True)
class Token:
    id: str  # public handle, not the secret
    user_id: int
    owner: str
    label: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None
    scope: tuple[Rule, ...] | None  # None: the owner's full rights

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


@dataclass(frozen=True)
class TokenLogin:
    """A token found by its digest, with its owner and the rules a request needs (read together)."""

    token: Token
    user: User | None  # None: deleted meanwhile
    rules: tuple[Rule, ...]  # the owner's
    public: tuple[Rule, ...]  # the anonymous user's


@dataclass(frozen=True)
class Session:
    user_id: int
    created_at: float
    expires_at: float
    remote: str


@dataclass(frozen=True)
class ProofLookup:
    """What the store knows of one client's proof of a user's password."""

    expires_at: float | None  # the matching live proof's expiry; None: this credential is not proven here
    address_has_proof: bool  # some live proof of this user's current password exists from this address


@dataclass(frozen=True)
class UploadSession:
    """A resumable upload (s3gate/http/resumable.py) on top of one S3 multipart upload.

    Which parts are done is S3's answer (ListParts), never kept here.
    """

    id: str  # random, URL-safe; the public handle (it appears in URLs and logs, so it is no credential)
    user_id: int | None  # None: anonymous, when authentication is off
    bucket: str
    key: str
    size: int
    part_size: int
    upload_id: str  # S3's multipart upload id
    file_name: str  # the file's own name and modification time, so a page can match a re-picked file
    file_mtime: float | None
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class Failures:
    count: int
    last_at: float
    blocked_until: float


class Store(abc.ABC):
    """Async access to the users database. Implementations must not block the event loop."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    # -- users
    @abc.abstractmethod
    async def count_users(self) -> int:
        """Real users (the anonymous pseudo-user does not count)."""

    @abc.abstractmethod
    async def get_user(self, name: str) -> User | None: ...

    @abc.abstractmethod
    async def get_user_by_id(self, user_id: int) -> User | None: ...

    @abc.abstractmethod
    async def list_users(self) -> list[User]: ...

    @abc.abstractmethod
    async def create_user(self, name: str, password_hash: str | None, admin: bool, now: float) -> User:
        """Raise DuplicateUser if the name is taken."""

    @abc.abstractmethod
    async def create_first_user(self, name: str, password_hash: str, admin: bool, now: float) -> User | None:
        """Create the user only if there is no real user yet (atomically); else None."""

    @abc.abstractmethod
    async def update_password(self, user_id: int, password_hash: str | None, now: float) -> None: ...

    @abc.abstractmethod
    async def set_flags(self, user_id: int, *, disabled: bool | None = None, admin: bool | None = None) -> None: ...

    @abc.abstractmethod
    async def delete_user(self, user_id: int) -> None:
        """Also deletes the user's rules, tokens and sessions."""

    # -- rules
    @abc.abstractmethod
    async def rules_for(self, user_id: int) -> list[Rule]: ...

    @abc.abstractmethod
    async def all_rules(self) -> dict[int, list[Rule]]: ...

    @abc.abstractmethod
    async def rules_with_public(self, user_id: int | None) -> tuple[list[Rule], list[Rule]]:
        """(the user's rules, the '*' pseudo-user's rules) in one round trip: every request asks."""

    @abc.abstractmethod
    async def grant(self, user_id: int, rule: Rule) -> Rule:
        """Add the rule's actions to the user's rule for (bucket, prefix); return the merged rule."""

    @abc.abstractmethod
    async def revoke(self, user_id: int, rule: Rule) -> Rule | bool | None:
        """Remove the actions; return what is left (None if nothing), False if there was no such rule."""

    # -- tokens
    @abc.abstractmethod
    async def create_token(self, token: Token, digest: str) -> None: ...

    @abc.abstractmethod
    async def token_login(self, digest: str) -> TokenLogin | None:
        """Everything a request with this token needs, in one round trip to the database."""

    @abc.abstractmethod
    async def get_token(self, token_id: str) -> Token | None: ...

    @abc.abstractmethod
    async def list_tokens(self, user_id: int | None = None) -> list[Token]: ...

    @abc.abstractmethod
    async def revoke_token(self, token_id: str, now: float) -> bool: ...

    @abc.abstractmethod
    async def touch_token(self, token_id: str, now: float) -> None: ...

    # -- sessions
    @abc.abstractmethod
    async def create_session(self, digest: str, session: Session) -> None: ...

    @abc.abstractmethod
    async def session_by_digest(self, digest: str) -> Session | None: ...

    @abc.abstractmethod
    async def delete_session(self, digest: str) -> bool: ...

    @abc.abstractmethod
    async def delete_sessions(self, user_id: int) -> int: ...

    @abc.abstractmethod
    async def count_sessions(self, user_id: int, now: float) -> int: ...

    # -- proven passwords (see AuthService.authenticate_password)
    @abc.abstractmethod
    async def find_proof(self, user_id: int, address: str, digest: str, generation: str, now: float) -> ProofLookup:
        """Look up a live proof of ``digest`` from ``address`` for the password hash ``generation``."""

    @abc.abstractmethod
    async def save_proof(self, user_id: int, address: str, digest: str, generation: str, expires_at: float) -> None:
        """Create or extend a proof (upsert)."""

    @abc.abstractmethod
    async def delete_proofs(self, user_id: int) -> int: ...

    # -- brute-force counters
    @abc.abstractmethod
    async def failures(self, keys: list[str]) -> dict[str, Failures]: ...

    @abc.abstractmethod
    async def record_failure(
        self, key: str, now: float, forget_before: float, wait_for: Callable[[int], float]
    ) -> Failures:
        """Count one failure (forgetting older ones), block for wait_for(count) seconds; atomically."""

    @abc.abstractmethod
    async def clear_failures(self, key: str) -> bool: ...

    # -- resumable upload sessions
    @abc.abstractmethod
    async def create_upload_session(self, session: UploadSession) -> None: ...

    @abc.abstractmethod
    async def get_upload_session(self, session_id: str) -> UploadSession | None: ...

    @abc.abstractmethod
    async def list_upload_sessions(self, user_id: int | None) -> list[UploadSession]:
        """One user's sessions (None: the anonymous ones), oldest first, expired ones included."""

    @abc.abstractmethod
    async def delete_upload_session(self, session_id: str) -> bool: ...

    @abc.abstractmethod
    async def expired_upload_sessions(self, now: float) -> list[UploadSession]: ...

    # -- the upload journal, when instances share the database (s3gate/storage/journal.py)
    @abc.abstractmethod
    async def journal_add(self, entry: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    async def journal_remove(self, upload_id: str) -> bool:
        """False if there was no such entry (ended, or another sweeper took it)."""

    @abc.abstractmethod
    async def journal_entries(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def journal_has(self, upload_id: str) -> bool: ...

    @abc.abstractmethod
    async def worker_alive(self, owner: str, now: float, until: float) -> None:
        """``owner`` is alive now, and counts as alive until ``until`` without another word."""

    @abc.abstractmethod
    async def workers_alive(self, now: float) -> set[str]: ...

    @abc.abstractmethod
    async def take_lease(self, name: str, holder: str, now: float, seconds: float) -> bool:
        """Take (or renew) the lease ``name`` unless another holder's is still running."""

    @abc.abstractmethod
    async def release_lease(self, name: str, holder: str) -> None: ...

    # -- housekeeping
    @abc.abstractmethod
    async def purge(self, now: float, forget_before: float) -> None:
        """Drop expired sessions and proofs, and forgotten failure counters."""

