"""The embedded SeaweedFS serves objects through its S3 API with the credentials, and nowhere else.

It is started exactly as `s3gate serve` starts it (the SeaweedFS class). Then
every socket the weed process listens on — TCP ports and unix sockets,
discovered from the process, not from a list of flags — is tried as a local
attacker would: HTTP reads, writes (multipart form, PUT, the master's
/submit and /dir/assign) and deletes (filer paths, volume file ids, the
master's /col/delete) without credentials, and gRPC without the client
certificate. All must be refused, while S3 with the credentials keeps working.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import botocore.exceptions
import psutil
import pytest

from s3gate.embedded import Credentials, SeaweedFS, weed_binary

pytestmark = pytest.mark.integration

BUCKET = "files"
SECRET = b"the secret content " + secrets.token_hex(8).encode()
KEY = "docs-private/secret.txt"


@pytest.fixture(scope="module")
def weed():
    """A private instance: the probes below would destroy a shared one if they succeeded."""
    root = Path(tempfile.mkdtemp(prefix="s3gate-ports-"))
    data_dir = root / "data"
    creds = Credentials.load_or_create(data_dir / "embedded-s3.json")  # as the launcher does
    server = SeaweedFS(data_dir / "seaweedfs", credentials=creds, buckets=(BUCKET,))
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=5)
        shutil.rmtree(root, ignore_errors=True)


# -- what the process listens on ------------------------------------------------------
def listening(pid: int) -> tuple[list[tuple[str, int]], list[str]]:
    proc = psutil.Process(pid)
    tcp = sorted({(c.laddr.ip, c.laddr.port) for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN})
    unix = sorted({c.laddr for c in proc.net_connections("unix") if c.laddr and not c.raddr})
    return tcp, unix


# -- plain HTTP over TCP or a unix socket ----------------------------------------------
class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def http_request(where: int | str, method: str, path: str, body: bytes | None = None, headers=None):
    """(status, body) or (None, error name) when the socket does not speak HTTP/1.1."""
    conn = (
        http.client.HTTPConnection("127.0.0.1", where, timeout=5)
        if isinstance(where, int)
        else UnixHTTPConnection(where)
    )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return None, type(exc).__name__.encode()
    finally:
        conn.close()


def form(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "b" + secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def refused(result: tuple[int | None, bytes]) -> bool:
    status, body = result
    return (status is None or status >= 400) and SECRET not in body


# -- gRPC (HTTP/2 over TLS) ------------------------------------------------------------
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _connect(where: int | str) -> socket.socket:
    if isinstance(where, int):
        return socket.create_connection(("127.0.0.1", where), timeout=5)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(where)
    return sock


def h2_session(where: int | str, *, tls: bool, client_cert: tuple[Path, Path] | None = None) -> bool:
    """Whether the socket answers an HTTP/2 preface with a SETTINGS frame, as a gRPC server does."""
    try:
        sock = _connect(where)
    except OSError:
        return False
    try:
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the attacker does not care who the server is
            ctx.set_alpn_protocols(["h2"])
            if client_cert:
                ctx.load_cert_chain(*map(str, client_cert))
            sock = ctx.wrap_socket(sock)
        sock.sendall(H2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
        return head[3] == 0x04  # frame type SETTINGS (RFC 9113 §6.5)
    except (OSError, ssl.SSLError):
        return False
    finally:
        sock.close()


# -- the test --------------------------------------------------------------------------
def weed_shell(weed: SeaweedFS, command: str, cwd: Path) -> str:
    """`weed shell` as an operator would run it; it reads security.toml from cwd."""
    saved = weed.data_dir / "mini.options"
    deadline = time.monotonic() + 30
    while not saved.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # weed mini writes it after its S3 port answers (seen missing once in CI)
    options = dict(
        line.split("=", 1) for line in saved.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    master, filer = options["master.port"], options["filer.port"]
    res = subprocess.run(
        [weed_binary(), "shell", f"-master=127.0.0.1:{master}", f"-filer=127.0.0.1:{filer}"],
        input=command + "\n", capture_output=True, text=True, cwd=cwd, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("WEED_")} | {"HOME": str(cwd)},
    )  # fmt: skip
    return res.stdout + res.stderr


def test_only_the_s3_api_with_credentials_serves_objects(weed):
    s3 = weed.client()
    big = os.urandom(11 * 1024 * 1024)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=SECRET)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="docs/big.bin")["UploadId"]
    parts = [
        {"PartNumber": n, "ETag": s3.upload_part(Bucket=BUCKET, Key="docs/big.bin", UploadId=upload, PartNumber=n, Body=chunk)["ETag"]}
        for n, chunk in ((1, big[: 6 * 1024 * 1024]), (2, big[6 * 1024 * 1024 :]))
    ]  # fmt: skip
    s3.complete_multipart_upload(Bucket=BUCKET, Key="docs/big.bin", UploadId=upload, MultipartUpload={"Parts": parts})

    # The file id of the secret's chunk, asked over gRPC with the keys (cwd = the data dir):
    # the mTLS material works for whoever holds it.
    meta = weed_shell(weed, f"fs.meta.cat /buckets/{BUCKET}/{KEY}", cwd=weed.data_dir)
    fids = re.findall(r'"fileId":\s*"(\d+,[0-9a-f]+)"', meta)
    assert fids, meta
    fid = fids[0]

    tcp, unix = listening(weed.process.pid)
    for ip, _ in tcp:
        assert ipaddress.ip_address(ip).is_loopback, f"weed listens on {ip}: {tcp}"
    ports = [port for _, port in tcp]
    assert weed.s3_port in ports
    assert len(ports) >= 9, tcp  # S3, master, volume, filer, admin + their gRPC twins

    # S3 without credentials: refused.
    assert refused(http_request(weed.s3_port, "GET", f"/{BUCKET}/{KEY}"))
    assert refused(http_request(weed.s3_port, "PUT", f"/{BUCKET}/docs/anon.txt", b"x"))
    assert refused(http_request(weed.s3_port, "DELETE", f"/{BUCKET}/{KEY}"))
    assert refused(http_request(weed.s3_port, "GET", f"/{BUCKET}?list-type=2"))

    sockets: list[int | str] = [p for p in ports if p != weed.s3_port] + list(unix)
    attempts: dict[str, tuple[int | None, bytes]] = {}
    for where in sockets:
        body, headers = form("h.txt", b"planted")
        tries = {
            "read filer path": ("GET", f"/buckets/{BUCKET}/{KEY}", None, {}),
            "list filer dir": (
                "GET",
                f"/buckets/{BUCKET}/docs-private/?pretty=y",
                None,
                {"Accept": "application/json"},
            ),
            "write filer path (form)": ("POST", f"/buckets/{BUCKET}/docs/planted.txt", body, headers),
            "write filer path (PUT)": ("PUT", f"/buckets/{BUCKET}/docs/planted2.txt", b"planted", {}),
            "delete filer path": ("DELETE", f"/buckets/{BUCKET}/{KEY}", None, {}),
            "read volume fid": ("GET", f"/{fid}", None, {}),
            "overwrite volume fid": ("POST", f"/{fid}", body, headers),
            "delete volume fid": ("DELETE", f"/{fid}", None, {}),
            "master submit": ("POST", "/submit", body, headers),
            "master delete collection": ("GET", f"/col/delete?collection={BUCKET}", None, {}),
            "S3 read on a socket": ("GET", f"/{BUCKET}/{KEY}", None, {}),
        }
        for what, (method, path, data, hdrs) in tries.items():
            attempts[f"{where} {what}"] = http_request(where, method, path, data, hdrs)
        # The master hands out file ids; a write to one must still be refused.
        status, answer = http_request(where, "GET", "/dir/assign")
        if status == 200:
            assigned = json.loads(answer)
            host, _, vport = assigned["url"].partition(":")
            attempts[f"{where} write assigned fid"] = http_request(
                int(vport), "POST", f"/{assigned['fid']}", body, headers
            )
            if assigned.get("auth"):  # a token for anyone who asks would defeat the signing
                attempts[f"{where} assign hands out a token"] = (200, b"")
    allowed = {
        what: (status, answer[:120]) for what, (status, answer) in attempts.items() if not refused((status, answer))
    }
    assert not allowed, allowed

    # gRPC: TLS with our client certificate gets an HTTP/2 session (so the probe can tell);
    # plaintext, or TLS without a certificate, gets nothing on any socket.
    open_grpc = [w for w in sockets + [weed.s3_port] if h2_session(w, tls=False) or h2_session(w, tls=True)]
    assert not open_grpc, open_grpc
    cert = (weed.data_dir / "security" / "weed.crt", weed.data_dir / "security" / "weed.key")
    grpc_sockets = [w for w in sockets if h2_session(w, tls=True, client_cert=cert)]
    grpc_tcp = [w for w in grpc_sockets if isinstance(w, int)]
    assert len(grpc_tcp) >= 5, (grpc_sockets, sockets)  # master, volume, filer, S3, admin
    assert any(isinstance(w, str) for w in grpc_sockets), grpc_sockets  # weed's unix gRPC sockets too

    # Nothing above changed the store, and S3 with the credentials does everything.
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == SECRET
    assert s3.get_object(Bucket=BUCKET, Key="docs/big.bin")["Body"].read() == big
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert listed == {KEY, "docs/big.bin"}, listed
    s3.delete_object(Bucket=BUCKET, Key="docs/big.bin")
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=BUCKET, Key="docs/big.bin")


def test_stop_leaves_no_socket_in_tmp(tmp_path):
    """weed mini leaves some of its /tmp/seaweedfs-*-grpc-PORT.sock files after a clean stop, and all of
    them when killed: stop() removes this store's, so restarts do not fill /tmp."""
    import glob
    import signal

    from s3gate.embedded import Credentials, SeaweedFS

    def ours(store: SeaweedFS) -> set[str]:
        ports = {store.s3_port, *(store._ports or ())}
        ports |= {p + 10000 for p in ports}
        return {p for p in glob.glob("/tmp/seaweedfs-*-grpc-*.sock") if int(p.rsplit("-", 1)[1][:-5]) in ports}

    store = SeaweedFS(tmp_path, credentials=Credentials("k", "s0123456789abcdef"), buckets=("bkt",)).start()
    assert ours(store)  # weed made some (else this test proves nothing)
    store.stop()
    assert not ours(store)
    store.start()  # again on the same ports; then killed outright
    assert ours(store)
    store.process.send_signal(signal.SIGKILL)
    store.process.wait()
    store.stop()
    assert not ours(store)


def test_a_port_taken_before_weed_binds_it_is_picked_again(tmp_path, monkeypatch):
    """A port checked free can be taken before weed binds it (weed mini then exits with
    "Port allocation failed"): start() picks its own ports again instead of failing."""
    import socket

    from s3gate import embedded

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", embedded._low_port()))
        taken.listen()
        port = taken.getsockname()[1]
        real = embedded._low_port
        handed = iter([port])  # the first pick (the S3 port) is the taken one
        monkeypatch.setattr(embedded, "_low_port", lambda: next(handed, None) or real())
        store = embedded.SeaweedFS(
            tmp_path, credentials=embedded.Credentials("k", "s0123456789abcdef"), buckets=("bkt",)
        )
        try:
            store.start()
            assert store.s3_port != port
            assert b"Port allocation failed" in store.log_path.read_bytes()  # the race really happened
            store.client().head_bucket(Bucket="bkt")
        finally:
            store.stop()
