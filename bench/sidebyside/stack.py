"""The three targets on loopback: SeaweedFS (the embedded class), a plain nginx in front of it, and s3gate.

nginx is a plain reverse proxy (request and response buffering off, HTTP/1.1
upstream) so SigV4-signed requests through it still verify. s3gate runs as
`s3gate serve` runs it (bench.common.Gateway), ``S3GATE_PART_SIZE=16MiB``,
``S3GATE_LINK_MODE=s3``, the upload budget from ``--budget``; with
``--auth token`` authentication is on and every request carries a Bearer token.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    BUCKET,
    PROCS,
    REPO,
    BenchError,
    Gateway,
    MiB,
    clean_env,
    free_port,
    log,
    proc_tree,
    start_store,
    vacuum,
    wait_port,
)
from s3gate.embedded import SeaweedFS

REGION = "us-east-1"


@dataclass
class Stack:
    work: Path
    args: argparse.Namespace
    store: SeaweedFS | None = None
    nginx: subprocess.Popen | None = None
    gw: Gateway | None = None
    ng_port: int = 0
    started: float = field(default_factory=time.time)
    code_seen: list[str] = field(default_factory=list)
    _signer: object = None

    # -- SeaweedFS
    def start_store(self) -> None:
        self.store = start_store(self.work / "weed")
        log(f"SeaweedFS up: S3 on 127.0.0.1:{self.store.s3_port} (pid {self.store.process.pid})")

    @property
    def s3_url(self) -> str:
        return self.store.endpoint

    @property
    def sigv4(self) -> list[str]:
        """curl's arguments that sign a request to the store."""
        c = self.store.credentials
        return ["--aws-sigv4", f"aws:amz:{REGION}:s3", "--user", f"{c.access_key}:{c.secret_key}"]

    def sign(self, method: str, url: str, body: bytes = b"") -> dict[str, str]:
        """SigV4 headers for one request (botocore's signer, payload hash included)."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        if self._signer is None:
            c = self.store.credentials
            self._signer = S3SigV4Auth(Credentials(c.access_key, c.secret_key), "s3", REGION)
        req = AWSRequest(method=method, url=url, data=body, headers={})
        self._signer.add_auth(req)
        return dict(req.headers.items())

    def s3_call(
        self, method: str, url: str, body: bytes = b"", timeout: float = 60
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url, data=body or None, method=method, headers=self.sign(method, url, body))
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def store_pids(self) -> list[int]:
        return proc_tree(self.store.process.pid) if self.store and self.store.process else []

    def vacuum(self) -> None:
        """Reclaim space of deleted objects so a full run stays small on disk."""
        vacuum(self.store)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            status, _, body = self.s3_call("DELETE", f"{self.s3_url}/{BUCKET}/{key}")
            if status not in (200, 204):
                log(f"warning: DELETE {key}: {status} {body[:200]!r}")

    def head_size(self, key: str) -> int:
        status, headers, _ = self.s3_call("HEAD", f"{self.s3_url}/{BUCKET}/{key}")
        if status != 200:
            raise BenchError(f"HEAD {key} direct: {status}")
        return int(headers.get("Content-Length", "-1"))

    def describe_open_uploads(self) -> str:
        """Open multipart uploads in the bucket and how many parts each has."""
        try:
            status, _, body = self.s3_call("GET", f"{self.s3_url}/{BUCKET}?uploads", timeout=10)
            if status != 200:
                return f"ListMultipartUploads: HTTP {status}"
            keys = re.findall(rb"<Key>([^<]*)</Key>", body)
            ids = re.findall(rb"<UploadId>([^<]*)</UploadId>", body)
            parts = []
            for k, u in zip(keys, ids, strict=False):
                url = f"{self.s3_url}/{BUCKET}/{k.decode()}?uploadId={u.decode()}"
                st, _, b = self.s3_call("GET", url, timeout=10)
                parts.append(str(b.count(b"<Part>")) if st == 200 else "?")
            return f"{len(ids)} multipart upload(s) open, parts stored per upload: [{', '.join(parts)}]"
        except OSError as exc:
            return f"could not list uploads: {exc}"

    def open_multipart_uploads(self) -> int:
        status, _, body = self.s3_call("GET", f"{self.s3_url}/{BUCKET}?uploads")
        if status != 200:
            return -1
        return body.count(b"<Upload>")

    def stop(self) -> None:
        """After PROCS.stop_all(): the store last (its stop() removes the sockets weed leaves in /tmp)."""
        if self.store is not None:
            self.store.stop(timeout=10)

    # -- nginx
    def start_nginx(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise BenchError("nginx not installed (apt-get install -y nginx)")
        d = self.work / "nginx"
        d.mkdir()
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / sub).mkdir()
        self.ng_port = free_port()
        keepalive = self.args.nginx_keepalive
        upstream_keepalive = f"keepalive {keepalive};" if keepalive else ""
        conn_header = 'proxy_set_header Connection "";' if keepalive else ""
        conf = f"""
worker_processes {self.args.nginx_workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream seaweedfs {{ server 127.0.0.1:{self.store.s3_port}; {upstream_keepalive} }}
    server {{
        listen 127.0.0.1:{self.ng_port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://seaweedfs;
            proxy_set_header Host $http_host;
            proxy_http_version 1.1;
            {conn_header}
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
    }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        with open(d / "stdout.log", "wb") as logf:
            self.nginx = PROCS.popen(
                "nginx", [nginx, "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
                stdout=logf, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_port(self.ng_port, 20, self.nginx, "nginx")
        log(f"nginx up: 127.0.0.1:{self.ng_port} -> SeaweedFS (pid {self.nginx.pid})")

    @property
    def ng_url(self) -> str:
        return f"http://127.0.0.1:{self.ng_port}"

    def nginx_pids(self) -> list[int]:
        return proc_tree(self.nginx.pid) if self.nginx else []

    def nginx_buffered_warnings(self) -> int:
        with contextlib.suppress(OSError):
            return (self.work / "nginx" / "error.log").read_text().count("buffered to a temporary file")
        return 0

    # -- s3gate
    def start_gateway(self) -> None:
        a = self.args
        env = {
            "S3GATE_PART_SIZE": "16MiB",
            "S3GATE_UPLOAD_MEMORY_BUDGET": str(a.budget),
            # The store is on loopback, so link_mode "auto" would pick gateway-signed links and
            # ?mode=redirect would quietly proxy. The client here can reach SeaweedFS: presign.
            "S3GATE_LINK_MODE": "s3",
            **a.gw_extra,
        }
        self.gw = Gateway(self.work, self.store, workers=a.gw_workers, auth=a.auth == "token", env=env)
        self._start_gateway()

    def _start_gateway(self) -> None:
        fp = code_fingerprint()
        if fp not in self.code_seen:
            if self.code_seen:
                log(f"WARNING: s3gate's source changed during the run (now {fp}); figures mix versions")
            self.code_seen.append(fp)
        self.gw.start()
        log(f"s3gate up: {self.gw.base} (master {self.gw.master.pid}, worker(s) {self.gw.worker_pids()})")

    def restart_gateway(self) -> None:
        """A fresh worker, warmed with one small upload and download, so its baseline RSS is clean."""
        self.gw.stop()
        self._start_gateway()
        self.warm_gateway()

    def warm_gateway(self) -> None:
        body = random.Random(7).randbytes(1 * MiB)
        url = f"{self.gw_url}/files/{BUCKET}/__warmup__"
        headers = {"Content-Type": "application/octet-stream", **self.gw.headers}
        req = urllib.request.Request(url, data=body, method="PUT", headers=headers)
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.status not in (200, 201):
                raise BenchError(f"warm-up upload: HTTP {r.status}")
        req = urllib.request.Request(url + "?mode=proxy", headers=self.gw.headers)
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.read() != body:
                raise BenchError("warm-up download returned other bytes")
        self.delete(["__warmup__"])
        time.sleep(0.5)

    @property
    def gw_url(self) -> str:
        return self.gw.base

    def gw_workers(self) -> list[int]:
        return self.gw.worker_pids() if self.gw else []


def code_fingerprint() -> str:
    """Short hash of the gateway's source, so a table says which code it measured."""
    h = hashlib.sha256()
    for path in sorted((REPO / "s3gate").rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def gateway_importable() -> tuple[bool, str]:
    r = subprocess.run(
        [sys.executable, "-c", "import s3gate.app; s3gate.app.app_factory"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=clean_env(),
    )  # fmt: skip
    return r.returncode == 0, (r.stderr.strip().splitlines() or [""])[-1]
