"""`s3gate serve`: the embedded S3 (when no endpoint is set) plus gunicorn.

Both children run in their own sessions, so Ctrl-C reaches only this process,
which then stops them in order: gunicorn first (uploads abort, downloads get
shutdown_timeout to finish), the embedded S3 last.

Every setting is checked before anything starts (one line, exit 2). If the
embedded S3 dies, it is reaped and started again on the same port with the
same credentials, after a pause that doubles with each death; if it dies
more than MAX_STORE_DEATHS times in STORE_DEATH_WINDOW seconds, or cannot be
started again, gunicorn is stopped and `serve` exits 1, so a service manager
(systemd's Restart=on-failure, a container's restart policy) sees the failure
and its own limits and alerts apply.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from . import certs, logformat
from . import settings as settings_mod
from .embedded import Credentials, SeaweedFS
from .errors import ConfigError, GatewayError

log = logging.getLogger("s3gate.launcher")

# How often the launcher looks at its children.
POLL_SECONDS = 0.5
# The embedded S3's restarts: a pause of 1, 2, 4 ... up to 30 s after each death;
# more deaths than this within the window and the launcher gives up (exit 1).
RESTART_DELAY_FIRST, RESTART_DELAY_MAX = 1.0, 30.0
MAX_STORE_DEATHS, STORE_DEATH_WINDOW = 5, 600.0


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the gateway (gunicorn + aiohttp workers)")
    p.add_argument("--host", help="address to bind (setting host)")
    p.add_argument("--port", type=int, help="port (setting port)")
    p.add_argument("--workers", type=int, help="worker processes (setting workers)")
    p.set_defaults(func=serve)


def gunicorn_argv(settings: settings_mod.Settings) -> list[str]:
    workers = settings.workers or os.cpu_count() or 1
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "s3gate.app:app_factory",
        "--worker-class",
        settings_mod.WORKER_CLASSES[settings.event_loop],
        "--bind",
        f"{settings.host}:{settings.port}",
        "--workers",
        str(workers),
        "--graceful-timeout",
        str(int(settings.graceful_timeout)),
        "--no-control-socket",
        "--log-level",
        settings.log_level,
        # child_exit: a dead worker's live gauges leave /metrics (s3gate.metrics).
        "--config",
        "python:s3gate.gunicorn_conf",
    ]
    if settings.log_format == "json":
        argv += ["--logger-class", "s3gate.gunicorn_conf.JsonLogger"]
    if settings.tls:
        # Direct TLS (no nginx): gunicorn's aiohttp worker loads these into every bind it serves.
        argv += [
            "--certfile",
            str(Path(settings.tls_cert).resolve()),
            "--keyfile",
            str(Path(settings.tls_key).resolve()),
        ]
    return argv


def check_before_start(settings: settings_mod.Settings) -> str | None:
    """What Settings.check cannot see alone: the auth room's settings, the bucket name, the address,
    the certificate. Returns a warning to print (an expired certificate), or None."""
    try:
        from .auth.config import check as check_auth
    except ImportError:
        pass
    else:
        check_auth(settings)
    if settings.embedded:
        from .storage.names import check_bucket

        try:
            check_bucket(settings.default_bucket)
        except GatewayError as exc:
            raise ConfigError(f"default_bucket: {exc.message}") from None
    warning = certs.check_pair(settings.tls_cert, settings.tls_key) if settings.tls else None
    _probe_listen(settings.host, settings.port, "host/port")
    if settings.http_redirect_port:
        _probe_listen(settings.host, settings.http_redirect_port, "http_redirect_port")
    return warning


def _probe_listen(host: str, port: int, names: str) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"host: cannot resolve {host!r} ({exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigError(f"{names}: cannot listen on {host}:{port} ({exc.strerror})") from None


def serve(args: argparse.Namespace) -> int:
    overrides = {
        k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v is not None
    }
    try:
        settings = settings_mod.load(**overrides)
        warning = check_before_start(settings)
    except ConfigError as exc:
        print(f"s3gate: configuration error: {exc}", file=sys.stderr)
        return 2
    if warning:
        print(f"s3gate: warning: {warning}", file=sys.stderr, flush=True)
    logformat.configure(settings.log_level, settings.log_format)
    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)

    env = dict(os.environ)
    env["S3GATE_DATA_DIR"] = str(data_dir)
    # Set before gunicorn forks its workers: prometheus-client picks its mode at import.
    env["PROMETHEUS_MULTIPROC_DIR"] = str(fresh_metrics_dir(data_dir))
    for name, value in overrides.items():
        env[f"S3GATE_{name.upper()}"] = str(value)

    seaweed = None
    if settings.embedded:
        creds = Credentials.load_or_create(data_dir / "embedded-s3.json")
        seaweed = SeaweedFS(
            data_dir / "seaweedfs",
            credentials=creds,
            s3_port=settings.embedded_s3_port,
            buckets=(settings.default_bucket,),
        )
        print(f"s3gate: starting embedded SeaweedFS (data in {seaweed.data_dir}) ...", flush=True)
        try:
            seaweed.start()
        except (RuntimeError, OSError) as exc:
            print(f"s3gate: {exc}", file=sys.stderr)
            return 1
        env.update(
            S3GATE_S3_ENDPOINT=seaweed.endpoint,
            S3GATE_S3_ACCESS_KEY=creds.access_key,
            S3GATE_S3_SECRET_KEY=creds.secret_key,
        )
        print(f"s3gate: embedded S3 ready at {seaweed.endpoint}, bucket '{settings.default_bucket}'", flush=True)

    redirect = None
    try:
        bootstrap_auth(settings, env)
        if settings.http_redirect_port:
            redirect = start_redirect(settings)
        gunicorn = subprocess.Popen(gunicorn_argv(settings), env=env, start_new_session=True)
        scheme = "https" if settings.tls else "http"
        print(f"s3gate: listening on {scheme}://{settings.host}:{settings.port}/  (Ctrl-C stops)", flush=True)
        return _supervise(gunicorn, settings, StoreKeeper(seaweed) if seaweed else None)
    except OSError as exc:  # the redirect port, taken since the check
        print(f"s3gate: {exc}", file=sys.stderr)
        return 1
    finally:
        if redirect is not None:
            redirect.stop()
        if seaweed is not None:
            seaweed.stop()
            print("s3gate: embedded S3 stopped", flush=True)


def fresh_metrics_dir(data_dir: Path) -> Path:
    """<data_dir>/metrics, private and empty: the workers' metric files of an earlier run would add up with ours."""
    path = data_dir / "metrics"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    for old in path.glob("*.db"):
        old.unlink()
    return path


def start_redirect(settings: settings_mod.Settings):
    """The plain-HTTP port: a 308 to https for every request (see s3gate.http.redirect)."""
    from .http.redirect import RedirectServer

    fallback = urllib.parse.urlsplit(settings.public_url).netloc.rpartition("@")[2] if settings.public_url else ""
    server = RedirectServer(settings.host, settings.http_redirect_port, settings.port, fallback)
    server.start()
    print(
        f"s3gate: http://{settings.host}:{settings.http_redirect_port}/ redirects to https (308)",
        flush=True,
    )
    return server


def bootstrap_auth(settings: settings_mod.Settings, env: dict[str, str]) -> None:
    """First start: create the admin account (the auth room decides how)."""
    try:
        from .auth import bootstrap
    except ImportError:
        return
    bootstrap.run(settings, env)


class StoreKeeper:
    """Restarts the embedded S3 when it dies; says when to give up."""

    def __init__(self, seaweed: SeaweedFS, clock=time.monotonic):
        self.seaweed = seaweed
        self.clock = clock
        self.deaths: list[float] = []
        self.restart_at: float | None = None

    def check(self) -> bool:
        """Called every POLL_SECONDS; False when the store cannot be kept up."""
        now = self.clock()
        if self.restart_at is None:
            code = self.seaweed.exited()  # reaps it: no zombie
            if code is None:
                return True
            self.deaths = [t for t in self.deaths if now - t < STORE_DEATH_WINDOW] + [now]
            if len(self.deaths) > MAX_STORE_DEATHS:
                print(
                    f"s3gate: the embedded S3 died {len(self.deaths)} times in {STORE_DEATH_WINDOW:.0f} s "
                    f"(last exit code {code}); giving up, see {self.seaweed.log_path}",
                    file=sys.stderr,
                    flush=True,
                )
                return False
            delay = min(RESTART_DELAY_FIRST * 2 ** (len(self.deaths) - 1), RESTART_DELAY_MAX)
            print(
                f"s3gate: the embedded S3 exited with code {code}; starting it again in {delay:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            self.restart_at = now + delay
        if now < self.restart_at:
            return True
        self.restart_at = None
        try:
            self.seaweed.start()  # same port, same credentials, same data
        except (RuntimeError, OSError) as exc:
            print(f"s3gate: the embedded S3 did not start again: {exc}", file=sys.stderr, flush=True)
            return False
        print(f"s3gate: embedded S3 ready again at {self.seaweed.endpoint}", flush=True)
        return True


def _supervise(
    gunicorn: subprocess.Popen[bytes], settings: settings_mod.Settings, keeper: StoreKeeper | None = None
) -> int:
    stopping = False
    failed = False

    def stop(kill: bool = False) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            print("\ns3gate: stopping (uploads in flight are aborted) ...", flush=True)
            gunicorn.send_signal(signal.SIGTERM)
        elif kill:  # second Ctrl-C: don't wait
            gunicorn.kill()

    def forward(signum: int, frame: object) -> None:
        stop(kill=True)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = gunicorn.wait(POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            except KeyboardInterrupt:
                continue
            if keeper is not None and not stopping and not keeper.check():
                failed = True
                stop()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if failed:
        return 1
    return 0 if stopping else code
