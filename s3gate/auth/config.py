"""The auth room's view of the settings, checked once at start (ConfigError on a bad value)."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..netaddr import is_loopback_host
from .rules import Rule, RuleError
from .throttle import ThrottleConfig


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool
    data_dir: str
    users_db: str
    secret_file: str  # shared by every instance; keys the password proofs (s3gate.keyring)
    password_min_length: int
    session_ttl: int
    password_cache_ttl: int
    throttle: ThrottleConfig
    public: tuple[Rule, ...]
    audit_log: str
    public_url: str


def parse_public(text: str) -> tuple[Rule, ...]:
    rules = []
    for part in text.replace("\n", ";").split(";"):
        if part.strip():
            rules.append(Rule.parse(part))
    return tuple(rules)


def check(settings) -> AuthConfig:
    problems = []
    if settings.password_min_length < 8:
        problems.append("password_min_length must be at least 8")
    if settings.session_ttl < 60:
        problems.append("session_ttl must be at least 60 seconds")
    if settings.password_cache_ttl < 0:
        problems.append("password_cache_ttl must be >= 0")
    if settings.login_delay < 0:
        problems.append("login_delay must be >= 0")
    if settings.login_max_failures < 1 or settings.login_max_failures_per_address < 1:
        problems.append("login_max_failures and login_max_failures_per_address must be at least 1")
    if settings.login_lockout < 1:
        problems.append("login_lockout must be at least 1 second")
    if settings.admin_password and len(settings.admin_password) < settings.password_min_length:
        problems.append(f"admin_password is shorter than password_min_length ({settings.password_min_length})")
    try:
        public = parse_public(settings.public)
    except RuleError as exc:
        problems.append(f"public: {exc}")
        public = ()
    if problems:
        raise ConfigError("; ".join(problems))
    return AuthConfig(
        enabled=settings.auth,
        data_dir=settings.data_dir,
        users_db=settings.users_db,
        secret_file=settings.secret_file,
        password_min_length=settings.password_min_length,
        session_ttl=settings.session_ttl,
        password_cache_ttl=settings.password_cache_ttl,
        throttle=ThrottleConfig(
            delay=settings.login_delay,
            max_failures=settings.login_max_failures,
            max_failures_per_address=settings.login_max_failures_per_address,
            lockout=float(settings.login_lockout),
        ),
        public=public,
        audit_log=settings.audit_log,
        public_url=settings.public_url,
    )


def open_warning(settings) -> str | None:
    """The loud warning to print at start when auth is off and the port is reachable beyond this machine."""
    if settings.auth or is_loopback_host(settings.host):
        return None
    return (
        f"AUTHENTICATION IS OFF (S3GATE_AUTH=0) and the gateway listens on {settings.host}:{settings.port}: "
        "ANYONE WHO CAN REACH THIS PORT CAN READ, OVERWRITE AND DELETE EVERY OBJECT. "
        "Turn auth on, or bind to 127.0.0.1."
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhdwy]?)", re.ASCII)
# The longest lifetime a token may be given ("never" is the way to say forever).
# Far enough for any real use, near enough that every expiry is a date clients can print.
MAX_DURATION = 100 * _UNITS["y"]
_DURATION_HELP = "use e.g. 3600, 90m, 12h, 30d, 1y (at most 100y) or never"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(text: str | int | float | None) -> float | None:
    """'30d', '12h', '90m', '3600' (seconds), 'never'/'' -> None; ValueError past MAX_DURATION."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise ValueError(f"bad duration {_shown(text)}: {_DURATION_HELP}")
    if isinstance(text, int):
        seconds = float(max(min(text, MAX_DURATION + 1), -1))  # a huge int overflows float(): clamp first
    elif isinstance(text, float):
        seconds = text
    else:
        raw = str(text).strip().lower()
        if raw in ("", "never", "none"):
            return None
        # ASCII digits only: float() would also take '1_0', 'nan', 'inf', '1e400' and other scripts' digits.
        match = _DURATION_RE.fullmatch(raw)
        if not match:
            raise ValueError(f"bad duration {_shown(text)}: {_DURATION_HELP}")
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if not math.isfinite(seconds) or seconds > MAX_DURATION:  # JSON's 1e400 arrives as inf
        raise ValueError(f"bad duration {_shown(text)}: at most {MAX_DURATION} seconds (100y); for no expiry use never")
    if seconds <= 0:
        raise ValueError(f"bad duration {_shown(text)}: must be positive")
    return seconds


_MIN_TS = dt.datetime.min.replace(tzinfo=dt.UTC).timestamp()
_MAX_TS = dt.datetime.max.replace(tzinfo=dt.UTC).timestamp()


def utc_time(ts: float) -> dt.datetime:
    """A stored timestamp as a UTC datetime; out-of-range values (old rows, inf) are clamped, never raised."""
    if not ts < _MAX_TS:  # also NaN
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    if ts <= _MIN_TS:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(ts, dt.UTC)
