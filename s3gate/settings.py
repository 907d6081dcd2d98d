"""Settings: declared once (name, default, help), loaded from TOML then the environment.

Every setting can be given in the config file (``S3GATE_CONFIG`` or
``config/s3gate.toml``) or as ``S3GATE_<NAME>`` in the environment; the
environment wins. ``tests/test_settings.py`` checks that each one is documented.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import os
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

MiB = 1024 * 1024
GiB = 1024 * MiB

# S3's own limits (AWS documentation, "Amazon S3 multipart upload limits").
S3_MIN_PART = 5 * MiB
S3_MAX_PART = 5 * GiB
S3_MAX_PARTS = 10_000
S3_MAX_OBJECT = 5 * 1024 * GiB


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")  # logging's and gunicorn's names
# event_loop -> the gunicorn worker class that runs it (aiohttp's own).
WORKER_CLASSES = {"uvloop": "aiohttp.GunicornUVLoopWebWorker", "asyncio": "aiohttp.GunicornWebWorker"}
# The embedded S3's gRPC twin listens 10,000 ports higher.
MAX_EMBEDDED_S3_PORT = 65535 - 10000
# Environment variables with the S3GATE_ prefix that are not settings.
NOT_SETTINGS = ("S3GATE_CONFIG",)
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", re.ASCII)


def valid_host(host: str) -> bool:
    """An IP address or a syntactically valid host name (RFC 1123); whether it binds is the launcher's check."""
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
        return True
    except ValueError:
        pass
    return 0 < len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in host.rstrip(".").split("."))


def _valid_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# A unix-socket peer has no address; trusted_proxies names it "unix".
UNIX_PEER = "unix"
ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network | str


def parse_proxies(text: str) -> tuple[ProxyNetwork, ...]:
    """'127.0.0.1/32, ::1 10.0.0.0/8' -> networks; 'unix' stays a word. ValueError names a bad entry."""
    out: list[ProxyNetwork] = []
    for entry in text.replace(",", " ").split():
        if entry.lower() == UNIX_PEER:
            out.append(UNIX_PEER)
            continue
        try:
            # strict=False: "10.1.2.3/8" means 10.0.0.0/8, as nginx's set_real_ip_from reads it.
            out.append(ipaddress.ip_network(entry.removeprefix("[").removesuffix("]"), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR range (e.g. 127.0.0.1, ::1, 10.0.0.0/8)") from None
    return tuple(out)


# Settings that were replaced: naming one is an error that says what to write instead.
REPLACED = {
    "trust_forwarded": (
        "trust_forwarded was replaced by trusted_proxies, the addresses of your proxies; "
        'with nginx on this machine: trusted_proxies = "127.0.0.1, ::1" (S3GATE_TRUSTED_PROXIES)'
    ),
}


def setting(default: Any, help: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"help": help, "secret": secret})


@dataclass(frozen=True)
class Settings:
    # -- where the gateway listens
    host: str = setting("127.0.0.1", "Address to bind. Loopback unless you mean otherwise.")
    port: int = setting(5000, "TCP port to listen on.")
    workers: int = setting(0, "gunicorn worker processes; 0 = one per CPU core.")
    event_loop: str = setting(
        "asyncio",
        "Each worker's event loop: asyncio (the standard library's) or uvloop (libuv: about 15% less CPU per small request, but about 1.7x the CPU per GB of large proxied downloads, measured with bench/run.py).",
    )
    data_dir: str = setting(
        "data", "Directory for the embedded S3's data, the link-signing key and the users database."
    )
    public_url: str = setting(
        "",
        "Base URL clients use to reach the gateway (e.g. https://files.example.org); used in links. Empty = from the request.",
    )
    trusted_proxies: str = setting(
        "",
        "Reverse proxies (addresses and CIDR ranges, comma-separated, e.g. '127.0.0.1, ::1'; 'unix' = a unix-socket peer) whose X-Forwarded-For/-Proto/-Host are believed; the client is the right-most address of X-Forwarded-For that is not one of them. Empty = believe no one (no proxy in front).",
    )
    tls_cert: str = setting(
        "",
        "PEM certificate (chain) file for HTTPS served by the gateway itself, without nginx; needs tls_key. Empty = plain HTTP.",
    )
    tls_key: str = setting("", "PEM private key file matching tls_cert.")
    http_redirect_port: int = setting(
        0,
        "With tls_cert: a plain-HTTP port (on host) that answers every request with a 308 to the same URL on https (method and body kept). 0 = off.",
    )
    log_level: str = setting("info", "Log level: debug, info, warning, error.")
    log_format: str = setting(
        "text",
        "Log lines: text, or json (one JSON object per line: the access log with request id, route, status, bytes, duration and user; every other logger with time, level, logger and message).",
    )
    metrics: str = setting(
        "admin",
        "Who may read GET /metrics (Prometheus): admin = signed-in admins and admins' API tokens (404 while auth is off); open = anyone who can reach the port; off = nobody (404).",
    )

    # -- the S3 store
    s3_endpoint: str = setting("", "S3 endpoint URL. Empty = start the embedded SeaweedFS (run.sh / s3gate serve).")
    s3_region: str = setting("us-east-1", "S3 region.")
    s3_access_key: str = setting(
        "", "S3 access key id. Empty = botocore's usual chain (AWS_ACCESS_KEY_ID, ~/.aws, instance role).", secret=True
    )
    s3_secret_key: str = setting("", "S3 secret access key.", secret=True)
    s3_addressing_style: str = setting("path", "S3 addressing style: path or virtual (use virtual on AWS).")
    s3_public_endpoint: str = setting(
        "", "Endpoint clients can reach, used only to sign presigned URLs when s3_endpoint is private."
    )
    s3_max_connections: int = setting(64, "Connection pool size to S3 per worker.")
    s3_timeout: float = setting(60.0, "Seconds to wait on S3 for a connection or a read before giving up (502/503).")
    s3_fast_path: bool = setting(
        True,
        "Sign Get/Head/PutObject with s3gate's lean SigV4 path (storage/fast.py); false = botocore for every call, for a store that rejects it.",
    )
    default_bucket: str = setting("files", "Bucket the embedded S3 creates at first start.")

    # -- embedded SeaweedFS
    embedded_s3_port: int = setting(8333, "Port of the embedded SeaweedFS S3 API (loopback); 0 = any free port.")

    # -- downloads
    download_mode: str = setting(
        "proxy",
        "How GET /files/... serves bytes: proxy (stream through the gateway) or redirect (302 to a presigned S3 URL). Per request: ?mode=.",
    )
    link_mode: str = setting(
        "auto",
        "What /downloads3/ hands out: s3 (presigned S3 URL), gateway (gateway-signed link to the proxy path) or auto (s3 when s3_public_endpoint is set or the endpoint is not on loopback).",
    )
    link_expiry: int = setting(3600, "Lifetime in seconds of presigned URLs and gateway-signed links.")
    download_chunk: int = setting(
        1 * MiB,
        "Bytes per read from S3 when proxying downloads; each download charges 4x this to upload_memory_budget.",
    )

    # -- uploads
    part_size: int = setting(
        8 * MiB,
        "Multipart part size in bytes (minimum 5 MiB; grows automatically when Content-Length needs more than 10,000 parts).",
    )
    parts_in_flight: int = setting(2, "Parts of one upload sent to S3 concurrently.")
    upload_memory_budget: int = setting(
        256 * MiB,
        "Bytes of upload and proxied-download buffers per worker (a download holds 4 x download_chunk + 256 KiB, less for small objects). When used up, further uploads and downloads wait (TCP backpressure); they do not fail.",
    )
    max_upload_bytes: int = setting(0, "Largest accepted upload in bytes (413 above it); 0 = S3's own limit (5 TiB).")
    max_form_files: int = setting(1000, "Most files accepted in one multipart/form-data request.")
    max_archive_members: int = setting(
        100_000,
        "Most entries (files, folders, links) read from one tar stream sent with ?extract=tar (413 beyond it; what was stored before stays and is named).",
    )
    shutdown_timeout: float = setting(
        20.0, "Seconds a worker waits for in-flight downloads on shutdown; uploads are aborted at once."
    )
    graceful_timeout: float = setting(
        30.0, "gunicorn's graceful timeout; must exceed shutdown_timeout so aborts finish."
    )
    abort_stale_uploads_hours: float = setting(
        0.0,
        "If > 0, also abort multipart uploads started by s3gate that are older than this many hours, even if a request still owns them (checked every upload_sweep_seconds). Orphans (no live request owns them) are aborted at start-up and every upload_sweep_seconds regardless. Others' uploads are never touched.",
    )
    upload_sweep_seconds: float = setting(
        600.0,
        "Seconds between two rounds of the upload sweeper (orphaned, stale and expired uploads). With a postgresql:// users_db, a worker of another host silent for 3 rounds counts as gone.",
    )
    upload_session_hours: float = setting(
        24.0,
        "Lifetime in hours of a resumable upload session (POST /api/uploads), counted from its creation; then its multipart upload is aborted and its parts deleted (checked every 10 minutes).",
    )

    # -- auth (owned by the auth room, s3gate/auth; checked by s3gate.auth.config.check)
    auth: bool = setting(
        True,
        "Require credentials (users, tokens, sessions). false = anyone who can reach the port may do anything; the gateway then warns loudly at start unless it listens on loopback only.",
    )
    admin_password: str = setting(
        "",
        "Password for the 'admin' account created at first start when there are no users. Empty = a random one, printed once and stored in <data_dir>/admin-password (mode 0600).",
        secret=True,
    )
    users_db: str = setting(
        "users.db",
        "The users database: an SQLite file (a relative path is inside data_dir), or postgresql://USER@HOST/DB for several gateways sharing one (password from ~/.pgpass or PGPASSWORD rather than the URL).",
    )
    secret_file: str = setting(
        "",
        "A file holding a random secret (at least 32 bytes) from which the link-signing and password-proof keys are derived. Required with a postgresql:// users_db: give every instance the same file. Empty = keys in <data_dir>/link-signing.key and password-proof.key.",
    )
    password_min_length: int = setting(12, "Shortest password accepted when setting one.")
    session_ttl: int = setting(
        12 * 3600,
        "Lifetime in seconds of a browser login session; logout, a password change, disabling or deleting the user end it at once.",
    )
    password_cache_ttl: int = setting(
        60,
        "Seconds a verified Basic password stays proven for the client address that proved it, counted from its last use: every worker then accepts it without argon2, and a lock on the user name (someone else guessing) does not apply to it. Kept in the users database as a keyed hash (key in <data_dir>/password-proof.key, or derived from secret_file), never the password. 0 = verify every time. A password change or disabling the user takes effect at once regardless.",
    )
    login_delay: float = setting(
        1.0,
        "Seconds a user name and a client address must wait after a failed login before the next attempt is checked (429 with Retry-After); doubles with each further failure, up to 60 s. 0 = no delays (lockout still applies).",
    )
    login_max_failures: int = setting(
        10,
        "Failed logins for one user name within login_lockout seconds that lock that name out for login_lockout seconds.",
    )
    login_max_failures_per_address: int = setting(
        50,
        "Failed logins from one client address (IPv6: one /64) within login_lockout seconds that lock that address out.",
    )
    login_lockout: int = setting(900, "Lockout length in seconds; failures older than this are forgotten.")
    public: str = setting(
        "",
        "Anonymous access without credentials: BUCKET[/PREFIX]:ACTIONS rules separated by ';' (e.g. 'files/pub:read,list'). Empty = none; `./run.sh users grant '*' ...` adds more at run time.",
    )
    audit_log: str = setting(
        "audit.log",
        "Audit log (JSON lines): a file (a relative path is inside data_dir), or '-' for the main log on standard error.",
    )

    # ----------------------------------------------------------------------
    def check(self) -> Settings:
        problems = []
        if not valid_host(self.host):
            problems.append(f"host must be an IP address or a host name, got {self.host!r}")
        if not 1 <= self.port <= 65535:
            problems.append("port must be between 1 and 65535")
        if self.workers < 0:
            problems.append("workers must be >= 0 (0 = one per CPU core)")
        if self.event_loop not in WORKER_CLASSES:
            problems.append(f"event_loop must be {' or '.join(WORKER_CLASSES)}")
        if not self.data_dir:
            problems.append("data_dir must not be empty")
        if self.users_db.startswith(("postgresql://", "postgres://")) and not self.secret_file:
            problems.append(
                "secret_file is required with a postgresql:// users_db: every instance must sign links and "
                "check password proofs with the same keys (openssl rand -base64 48 > FILE; give each instance FILE)"
            )
        if self.log_level.lower() not in LOG_LEVELS:
            problems.append(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.log_format not in ("text", "json"):
            problems.append("log_format must be text or json")
        if self.metrics not in ("admin", "open", "off"):
            problems.append("metrics must be admin, open or off")
        for name in ("public_url", "s3_endpoint", "s3_public_endpoint"):
            value = getattr(self, name)
            if value and not _valid_url(value):
                problems.append(f"{name} must be an http:// or https:// URL, got {value!r}")
        try:
            parse_proxies(self.trusted_proxies)
        except ValueError as exc:
            problems.append(f"trusted_proxies: {exc}")
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append("tls_cert and tls_key go together: set both (HTTPS) or neither (plain HTTP)")
        if self.http_redirect_port and not self.tls_cert:
            problems.append("http_redirect_port redirects to HTTPS: it needs tls_cert and tls_key")
        if not 0 <= self.http_redirect_port <= 65535 or self.http_redirect_port == self.port:
            problems.append("http_redirect_port must be 0 (off) or a port between 1 and 65535 other than port")
        if not 0 <= self.embedded_s3_port <= MAX_EMBEDDED_S3_PORT:
            problems.append(
                f"embedded_s3_port must be between 0 and {MAX_EMBEDDED_S3_PORT} (its gRPC port is 10000 higher)"
            )
        if self.s3_max_connections < 1:
            problems.append("s3_max_connections must be at least 1")
        if not self.s3_timeout > 0:
            problems.append("s3_timeout must be > 0")
        if self.download_chunk < 1:
            problems.append("download_chunk must be at least 1 byte")
        if self.max_form_files < 1:
            problems.append("max_form_files must be at least 1")
        if self.max_archive_members < 1:
            problems.append("max_archive_members must be at least 1")
        if not self.shutdown_timeout > 0:
            problems.append("shutdown_timeout must be > 0")
        if not self.abort_stale_uploads_hours >= 0:
            problems.append("abort_stale_uploads_hours must be >= 0")
        if not 1 <= self.upload_sweep_seconds <= 86400:
            problems.append("upload_sweep_seconds must be between 1 and 86400")
        if not 0 < self.upload_session_hours <= 24 * 365:
            problems.append("upload_session_hours must be > 0 and at most a year (8760)")
        if self.download_mode not in ("proxy", "redirect"):
            problems.append("download_mode must be proxy or redirect")
        if self.link_mode not in ("auto", "s3", "gateway"):
            problems.append("link_mode must be auto, s3 or gateway")
        if self.s3_addressing_style not in ("path", "virtual", "auto"):
            problems.append("s3_addressing_style must be path, virtual or auto")
        if not (S3_MIN_PART <= self.part_size <= S3_MAX_PART):
            problems.append(f"part_size must be between {S3_MIN_PART} and {S3_MAX_PART} bytes")
        if self.parts_in_flight < 1:
            problems.append("parts_in_flight must be at least 1")
        if self.upload_memory_budget < self.part_size:
            problems.append("upload_memory_budget must hold at least one part")
        if self.max_upload_bytes < 0:
            problems.append("max_upload_bytes must be >= 0")
        if self.shutdown_timeout >= self.graceful_timeout:
            problems.append("shutdown_timeout must be below graceful_timeout")
        if self.link_expiry <= 0 or self.link_expiry > 7 * 24 * 3600:
            problems.append("link_expiry must be between 1 second and 7 days (SigV4's limit)")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    @functools.cached_property
    def trusted_networks(self) -> tuple[ProxyNetwork, ...]:
        """trusted_proxies, parsed (once per Settings: it is read on every request)."""
        return parse_proxies(self.trusted_proxies)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def upload_limit(self) -> int:
        return self.max_upload_bytes or S3_MAX_OBJECT

    @property
    def embedded(self) -> bool:
        return not self.s3_endpoint

    def redacted(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.metadata.get("secret") and value else value
        out["users_db"] = redact_url(self.users_db)
        return out


def redact_url(url: str) -> str:
    """A database URL fit for messages: postgresql://user:secret@host/db -> user:***@; ?password=... too.

    (A password is better kept in ~/.pgpass or PGPASSWORD; if one is in the URL, it is never shown.)
    """
    url = re.sub(r"^([a-z]+://[^/:@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(kind, kind)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}: expected true/false, got {raw!r}")
    if kind in (int, float):
        try:
            value = _number(kind, raw)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name}: expected a finite number, got {raw!r}")
        return value
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected {kind.__name__}, got {raw!r}") from None


def _number(kind: type, raw: Any) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise TypeError(raw)
    if not isinstance(raw, str):
        return kind(raw)
    raw = raw.strip().replace("_", "")
    if not raw.isascii():  # int() and float() also take other scripts' digits
        raise ValueError(raw)
    suffixes = {"k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB}
    mult = 1
    low = raw.lower().removesuffix("ib").removesuffix("b")
    if low and low[-1] in suffixes:
        mult, low = suffixes[low[-1]], low[:-1]
    return kind(float(low) * mult) if mult != 1 else kind(low)


def config_path(environ: dict[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    if env.get("S3GATE_CONFIG"):
        return Path(env["S3GATE_CONFIG"])
    default = Path("config/s3gate.toml")
    return default if default.exists() else None


def load(environ: dict[str, str] | None = None, *, use_file: bool = True, **overrides: Any) -> Settings:
    """File first, then S3GATE_* variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_path(env) if use_file else None
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        data = data.get("s3gate", data)
        values.update(data)
    for name, message in REPLACED.items():
        if name in values or name in overrides or f"S3GATE_{name.upper()}" in env:
            raise ConfigError(message)
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {_suggest(unknown, known)}")
    # A typo in a variable name (S3GATE_MAX_UPLOD_BYTES) must not silently leave the default.
    unknown = sorted(
        key for key in env if key.startswith("S3GATE_") and key not in NOT_SETTINGS and key[7:].lower() not in known
    )
    if unknown:
        names = [f"S3GATE_{n.upper()}" for n in known] + list(NOT_SETTINGS)
        raise ConfigError(f"unknown setting(s) in the environment: {_suggest(unknown, names)}")
    for name in known:
        key = f"S3GATE_{name.upper()}"
        if key in env:
            values[name] = env[key]
    values.update(overrides)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s): {_suggest(unknown, known)}")
    typed = {n: _coerce(n, known[n].type, v) for n, v in values.items()}
    return Settings(**typed).check()


def _suggest(unknown: list[str], known) -> str:
    out = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(known), n=1)
        out.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return ", ".join(out)


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes).check()
