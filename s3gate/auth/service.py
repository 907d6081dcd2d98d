"""Users, tokens and sessions: the operations the HTTP layer and the CLI share.

``AuthService`` turns credentials into a ``Principal`` (who, and what they may
do) and carries out administration. It knows nothing of aiohttp: errors are
the domain errors of ``s3gate.errors`` and the HTTP layer adds headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import argon2

from .. import keyring
from ..errors import BadRequest, NotFound, TooManyRequests, Unauthorized
from . import audit, credentials
from .config import MAX_DURATION, AuthConfig, utc_time
from .passwords import HashQueueFull, PasswordRejected, Passwords
from .rules import Rule, grants, merge, subset
from .sql import open_store
from .store import ANONYMOUS, DuplicateUser, ProofLookup, Session, Store, Token, User
from .throttle import Throttle, address_key

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
TOKEN_TOUCH_EVERY = 60.0  # seconds between last_used_at writes for one token


class InvalidCredentials(Unauthorized):
    """Same message for an unknown user, a wrong password and a disabled account."""

    default_message = "invalid user name or password"


class InvalidToken(Unauthorized):
    default_message = "invalid, expired or revoked token"


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they may do: the owner's rules, narrowed by every scope."""

    name: str | None  # None: anonymous
    via: str  # password | token | session | link | anonymous
    admin: bool = False
    rules: tuple[Rule, ...] = ()
    scopes: tuple[tuple[Rule, ...], ...] = ()  # a token's scope, a link's read-only...; all must allow
    user_id: int | None = None
    token_id: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    def owner_may(self, action: str, bucket: str, key: str = "") -> bool:
        """What the user may do, before any scope narrows it."""
        return self.admin or grants(self.rules, action, bucket, key)

    def may(self, action: str, bucket: str, key: str = "") -> bool:
        if not self.owner_may(action, bucket, key):
            return False
        return all(grants(scope, action, bucket, key) for scope in self.scopes)

    def narrowed(self, scope: Iterable[Rule], via: str | None = None) -> Principal:
        return replace(self, scopes=(*self.scopes, tuple(scope)), via=via or self.via)


ANONYMOUS_PRINCIPAL = Principal(None, "anonymous")


def _generation(password_hash: str) -> str:
    """Which password hash a proof matched: a new hash (change, rehash) voids older proofs."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise BadRequest(
            f"invalid user name {name!r}: 1-64 characters of letters, digits and . _ @ + -, starting with a letter or digit"
        )
    return name


class AuthService:
    def __init__(
        self,
        store: Store,
        config: AuthConfig,
        *,
        passwords: Passwords | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.config = config
        self.passwords = passwords or Passwords(config.password_min_length)
        self.clock = clock
        self.throttle = Throttle(store, config.throttle, clock)
        self._proof_key: bytes | None = None  # loaded on first use (the CLI rarely needs it)

    @classmethod
    async def open(
        cls,
        config: AuthConfig,
        *,
        hasher: argon2.PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> AuthService:
        store = await open_store(config.data_dir, config.users_db)
        passwords = Passwords(config.password_min_length, hasher=hasher)
        service = cls(store, config, passwords=passwords, clock=clock)
        now = clock()
        try:
            await store.purge(now, now - config.throttle.lockout)
        except BaseException:
            await store.close()
            raise
        return service

    async def close(self) -> None:
        await self.store.close()

    # ------------------------------------------------------------------ users
    async def _user(self, name: str) -> User:
        user = await self.store.get_user(name)
        if user is None or user.name == ANONYMOUS:
            raise NotFound(f"no such user: {name}")
        return user

    async def _hash(self, password: str) -> str:
        try:
            return await self.passwords.hash(password)
        except PasswordRejected as exc:
            raise BadRequest(str(exc)) from None

    async def add_user(self, name: str, password: str | None, *, admin: bool = False) -> User:
        check_name(name)
        hashed = await self._hash(password) if password is not None else None
        try:
            return await self.store.create_user(name, hashed, admin, self.clock())
        except DuplicateUser:
            raise BadRequest(f"user {name} already exists") from None

    async def create_first_admin(self, name: str, password: str) -> User | None:
        hashed = await self._hash(password)
        return await self.store.create_first_user(check_name(name), hashed, True, self.clock())

    async def set_password(self, name: str, password: str | None) -> int:
        """Set (or with None remove) the password; ends the user's sessions. Returns sessions ended."""
        user = await self._user(name)
        hashed = await self._hash(password) if password is not None else None
        await self.store.update_password(user.id, hashed, self.clock())
        await self.store.delete_proofs(user.id)
        return await self.store.delete_sessions(user.id)

    async def set_disabled(self, name: str, disabled: bool) -> int:
        user = await self._user(name)
        await self.store.set_flags(user.id, disabled=disabled)
        await self.store.delete_proofs(user.id)
        return await self.store.delete_sessions(user.id) if disabled else 0

    async def set_admin(self, name: str, admin: bool) -> None:
        user = await self._user(name)
        await self.store.set_flags(user.id, admin=admin)

    async def delete_user(self, name: str) -> None:
        user = await self._user(name)
        await self.store.delete_user(user.id)  # its proofs go with it (ON DELETE CASCADE)

    async def list_users(self) -> list[tuple[User, list[Rule]]]:
        """Every user with their rules; the '*' pseudo-user only while it holds a rule."""
        users = await self.store.list_users()
        rules = await self.store.all_rules()
        return [(u, rules.get(u.id, [])) for u in users if u.name != ANONYMOUS or rules.get(u.id)]

    async def logout_everywhere(self, name: str) -> int:
        user = await self._user(name)
        return await self.store.delete_sessions(user.id)

    # ------------------------------------------------------------------ rules
    async def _rule_owner(self, name: str) -> User:
        if name == ANONYMOUS:
            user = await self.store.get_user(ANONYMOUS)
            if user is None:
                try:
                    user = await self.store.create_user(ANONYMOUS, None, False, self.clock())
                except DuplicateUser:
                    user = await self.store.get_user(ANONYMOUS)
            assert user is not None
            return user
        return await self._user(name)

    async def grant(self, name: str, rule: Rule) -> Rule:
        user = await self._rule_owner(name)
        return await self.store.grant(user.id, rule)

    async def revoke(self, name: str, rule: Rule) -> Rule | None:
        user = await self._rule_owner(name)
        have = await self.store.rules_for(user.id)
        current = next((r for r in have if (r.bucket, r.prefix) == (rule.bucket, rule.prefix)), None)
        if current is None or not current.actions & rule.actions:
            listed = ", ".join(str(r) for r in have) or "none"
            raise NotFound(f"{name} has no such right on {rule.target} (rules: {listed})")
        left = await self.store.revoke(user.id, rule)
        return left if isinstance(left, Rule) else None

    async def public_rules(self) -> tuple[Rule, ...]:
        """Rules everyone has: the ``public`` setting plus the '*' pseudo-user's grants."""
        _, stored = await self.store.rules_with_public(None)
        return self.config.public + tuple(stored)

    async def unlock(self, *, name: str | None = None, remote: str | None = None) -> bool:
        return await self.throttle.unlock(name=name, remote=remote)

    # ------------------------------------------------------ authentication
    async def principal_for(self, user: User, via: str, **extra) -> Principal:
        mine, public = await self.store.rules_with_public(user.id)
        return self._principal(user, via, mine, public, **extra)

    def _principal(self, user: User, via: str, mine: Sequence[Rule], public: Sequence[Rule], **extra) -> Principal:
        # The user's rules, then the public_* settings', then the anonymous user's.
        rules = tuple(mine) + self.config.public + tuple(public)
        return Principal(user.name, via, user.admin, rules, user_id=user.id, **extra)

    async def anonymous(self) -> Principal:
        return Principal(None, "anonymous", rules=await self.public_rules())

    async def _proof_digest(self, user_id: int, password: str) -> str:
        """HMAC(server key, user id + password): what a proof stores instead of the password."""
        if self._proof_key is None:
            self._proof_key = await asyncio.to_thread(
                keyring.server_key, self.config.data_dir, self.config.secret_file, "password-proof"
            )
        msg = f"s3gate-proof-v1\0{user_id}\0".encode() + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._proof_key, msg, hashlib.sha256).hexdigest()

    async def authenticate_password(
        self, name: str, password: str, remote: str | None, *, request_id: str | None = None
    ) -> Principal:
        """Check a user name and password; raise InvalidCredentials (401), TooManyRequests (429) or HashQueueFull (503).

        A password that verifies leaves a proof in the users store, bound to the
        client's address (the throttle's address key) and to the password hash
        it matched, for ``password_cache_ttl`` seconds since its last use. The
        same password from the same address is then accepted by every worker
        without argon2 and without waiting for the hash queue, and a block on the
        user name (someone else guessing) does not apply to it; a block on its
        address does. A password change, disabling or deleting the user voids
        every proof at once.
        """
        user = await self.store.get_user(name) if _NAME_RE.match(name) else None
        stored = user.password_hash if user is not None else None
        now = self.clock()
        ttl = self.config.password_cache_ttl
        address = address_key(remote)
        proof = ProofLookup(None, False)
        if ttl > 0:
            # Looked up for unknown and disabled users too (matching nothing), so
            # the answer's timing does not tell which names exist.
            eligible = user is not None and bool(stored) and not user.disabled
            digest = await self._proof_digest(user.id if user else -1, password)
            generation = _generation(stored or "")
            proof = await self.store.find_proof(user.id if user else -1, address, digest, generation, now)
            if eligible and proof.expires_at is not None and not await self.throttle.address_blocked(remote):
                assert user is not None
                if proof.expires_at - now < ttl / 2:  # extended by use; written at most every ttl/2
                    await self.store.save_proof(user.id, address, digest, generation, now + ttl)
                return await self.principal_for(user, "password")
        await self.passwords.dummy_hash()
        # Check the counters, verify and count a failure while holding a hashing
        # slot: a burst of parallel guesses queues here and meets the counters
        # its predecessors updated, instead of all passing the check at once.
        async with self.passwords.slot():
            try:
                await self.throttle.check(
                    name, remote, proven_address=proof.address_has_proof and proof.expires_at is None
                )
            except TooManyRequests:
                audit.record(
                    "login_throttled",
                    user=user.name if user else None,
                    remote=remote,
                    request_id=request_id,
                    outcome="locked",
                )
                raise
            ok = await self.passwords.verify_in_slot(stored, password)
            failed = not ok or user is None or user.disabled
            wait = await self.throttle.failed(name, remote) if failed else 0.0
        if failed:
            audit.record(
                "login_failed",
                user=user.name if user is not None else None,  # an unknown "name" may be a mistyped password
                remote=remote,
                request_id=request_id,
                outcome="failed",
                reason="disabled" if (ok and user is not None) else "bad credentials",
            )
            if wait >= self.config.throttle.lockout:
                audit.record(
                    "login_locked",
                    user=user.name if user else None,
                    remote=remote,
                    request_id=request_id,
                    outcome="locked",
                )
            raise InvalidCredentials()
        assert user is not None and stored is not None
        await self.throttle.succeeded(name)
        if self.passwords.needs_rehash(stored):
            with contextlib.suppress(HashQueueFull):  # busy: upgrade at a later login
                stored = await self.passwords.rehash(password)
                await self.store.update_password(user.id, stored, user.password_changed_at or now)
        if ttl > 0:
            digest = await self._proof_digest(user.id, password)
            await self.store.save_proof(user.id, address, digest, _generation(stored), now + ttl)
        return await self.principal_for(user, "password")

    async def authenticate_token(self, secret: str, *, name: str | None = None) -> Principal:
        """A ``s3g_`` token (Bearer, or as the Basic password with its owner's name)."""
        if not credentials.well_formed_token(secret):
            raise InvalidToken()
        found = await self.store.token_login(credentials.digest(secret))  # one trip to the database
        now = self.clock()
        if found is None:
            raise InvalidToken()
        token, user = found.token, found.user
        if token.state(now) != "active" or (name is not None and name != token.owner):
            raise InvalidToken()
        if user is None or user.disabled:
            raise InvalidToken()
        if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_EVERY:
            await self.store.touch_token(token.id, now)
        scopes = (token.scope,) if token.scope is not None else ()
        return self._principal(user, "token", found.rules, found.public, scopes=scopes, token_id=token.id)

    async def session_principal(self, session_id: str) -> Principal | None:
        """The session's user, or None if the id is unknown, expired or its user disabled."""
        if not credentials.well_formed_session(session_id):
            return None
        session = await self.store.session_by_digest(credentials.digest(session_id))
        if session is None or session.expires_at <= self.clock():
            return None
        user = await self.store.get_user_by_id(session.user_id)
        if user is None or user.disabled:
            return None
        return await self.principal_for(user, "session")

    async def signer_principal(self, name: str) -> Principal:
        """Whoever signed a gateway link, with their rights now (not when signing)."""
        if not name:
            return await self.anonymous()
        user = await self.store.get_user(name) if _NAME_RE.match(name) else None
        if user is None or user.disabled:
            return Principal(name, "link")  # no rights: the link dies with its signer
        return await self.principal_for(user, "link")

    # ------------------------------------------------------------ sessions
    async def start_session(self, principal: Principal, remote: str | None) -> tuple[str, float]:
        if principal.user_id is None:
            raise Unauthorized()
        now = self.clock()
        sid = credentials.new_session_id()
        expires = now + self.config.session_ttl
        await self.store.create_session(
            credentials.digest(sid), Session(principal.user_id, now, expires, (remote or "")[:64])
        )
        await self.store.purge(now, now - self.config.throttle.lockout)
        return sid, expires

    async def end_session(self, session_id: str) -> bool:
        if not credentials.well_formed_session(session_id):
            return False
        return await self.store.delete_session(credentials.digest(session_id))

    # -------------------------------------------------------------- tokens
    async def create_token(
        self,
        owner: str,
        *,
        expires_in: float | None = None,
        scope: Iterable[Rule] | None = None,
        label: str = "",
    ) -> tuple[str, Token]:
        """Return (the token, shown once; its record). The scope must be within the owner's rights."""
        user = await self._user(owner)
        if user.disabled:
            raise BadRequest(f"user {owner} is disabled")
        scope_rules = tuple(merge(scope)) if scope is not None else None
        if scope_rules is not None:
            if not scope_rules:
                raise BadRequest("an empty scope grants nothing; omit --scope for the owner's full rights")
            if not user.admin:
                owner_rules = tuple(await self.store.rules_for(user.id)) + await self.public_rules()
                missing = subset(scope_rules, owner_rules)
                if missing:
                    raise BadRequest(f"scope exceeds {owner}'s rights: {', '.join(missing)}")
        if expires_in is not None and not 0 < expires_in <= MAX_DURATION:  # also NaN
            raise BadRequest(f"expiry must be in the future and at most {MAX_DURATION} seconds (100y) away")
        now = self.clock()
        secret = credentials.new_token()
        token = Token(
            id=credentials.new_token_id(),
            user_id=user.id,
            owner=user.name,
            label=label[:100],
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
            last_used_at=None,
            revoked_at=None,
            scope=scope_rules,
        )
        await self.store.create_token(token, credentials.digest(secret))
        return secret, token

    async def list_tokens(self, owner: str | None = None) -> list[Token]:
        user_id = (await self._user(owner)).id if owner else None
        return await self.store.list_tokens(user_id)

    async def revoke_token(self, token_id: str, *, owner_id: int | None = None) -> Token:
        token = await self.store.get_token(token_id)
        if token is None or (owner_id is not None and token.user_id != owner_id):
            raise NotFound(f"no such token: {token_id}")
        await self.store.revoke_token(token_id, self.clock())
        return token


@contextlib.asynccontextmanager
async def running_service(
    config: AuthConfig,
    *,
    hasher: argon2.PasswordHasher | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[AuthService]:
    """The audit log and the users store, opened and closed together: the app, the CLI, first start.

    With ``audit_log = "-"`` the audit lines join the main log on standard error
    (a command's own standard error: see ``cli._settings``).
    """
    async with audit.running(config.audit_log, config.data_dir):
        service = await AuthService.open(config, hasher=hasher, **({"clock": clock} if clock else {}))
        try:
            yield service
        finally:
            await service.close()


def iso_time(ts: float | None) -> str | None:
    """A stored timestamp for JSON (ISO 8601, UTC); clamped, so any stored value lists."""
    return None if ts is None else utc_time(ts).isoformat(timespec="seconds")


def token_json(t: Token, now: float) -> dict:
    """A token as the API and ``s3gate tokens list --json`` show it (never the secret)."""
    return {
        "id": t.id,
        "user": t.owner,
        "label": t.label,
        "created": iso_time(t.created_at),
        "expires": iso_time(t.expires_at),
        "last_used": iso_time(t.last_used_at),
        "state": t.state(now),
        "scope": [str(r) for r in t.scope] if t.scope is not None else None,
    }
