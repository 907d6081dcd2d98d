"""`s3gate serve`: the embedded S3 (when no endpoint is set) plus gunicorn.

Both children run in their own sessions, so Ctrl-C reaches only this process,
which then stops them in order: gunicorn first (uploads abort, downloads get
shutdown_timeout to finish), the embedded S3 last.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from . import settings as settings_mod
from .embedded import Credentials, SeaweedFS
from .errors import ConfigError

log = logging.getLogger("s3gate.launcher")


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the gateway (gunicorn + aiohttp workers)")
    p.add_argument("--host", help="address to bind (setting host)")
    p.add_argument("--port", type=int, help="port (setting port)")
    p.add_argument("--workers", type=int, help="worker processes (setting workers)")
    p.set_defaults(func=serve)


def gunicorn_argv(settings: settings_mod.Settings) -> list[str]:
    workers = settings.workers or os.cpu_count() or 1
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "s3gate.app:app_factory",
        "--worker-class",
        "aiohttp.GunicornWebWorker",
        "--bind",
        f"{settings.host}:{settings.port}",
        "--workers",
        str(workers),
        "--graceful-timeout",
        str(int(settings.graceful_timeout)),
        "--no-control-socket",
        "--log-level",
        settings.log_level,
    ]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    overrides = {
        k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v is not None
    }
    try:
        settings = settings_mod.load(**overrides)
    except ConfigError as exc:
        print(f"s3gate: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)

    env = dict(os.environ)
    env["S3GATE_DATA_DIR"] = str(data_dir)
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
        except RuntimeError as exc:
            print(f"s3gate: {exc}", file=sys.stderr)
            return 1
        env.update(
            S3GATE_S3_ENDPOINT=seaweed.endpoint,
            S3GATE_S3_ACCESS_KEY=creds.access_key,
            S3GATE_S3_SECRET_KEY=creds.secret_key,
        )
        print(f"s3gate: embedded S3 ready at {seaweed.endpoint}, bucket '{settings.default_bucket}'", flush=True)

    try:
        bootstrap_auth(settings, env)
        gunicorn = subprocess.Popen(gunicorn_argv(settings), env=env, start_new_session=True)
        print(f"s3gate: listening on http://{settings.host}:{settings.port}/  (Ctrl-C stops)", flush=True)
        return _supervise(gunicorn, settings)
    finally:
        if seaweed is not None:
            seaweed.stop()
            print("s3gate: embedded S3 stopped", flush=True)


def bootstrap_auth(settings: settings_mod.Settings, env: dict[str, str]) -> None:
    """First start: create the admin account (the auth room decides how)."""
    try:
        from .auth import bootstrap
    except ImportError:
        return
    bootstrap.run(settings, env)


def _supervise(gunicorn: subprocess.Popen[bytes], settings: settings_mod.Settings) -> int:
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            print("\ns3gate: stopping (uploads in flight are aborted) ...", flush=True)
            gunicorn.send_signal(signal.SIGTERM)
        else:  # second Ctrl-C: don't wait
            gunicorn.kill()

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = gunicorn.wait()
                break
            except KeyboardInterrupt:
                continue
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    return 0 if stopping else code
