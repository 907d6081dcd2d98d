"""Direct TLS without nginx: `s3gate serve` with tls_cert/tls_key and the plain-HTTP redirect port (issue 11, item 4).

The real console script as run.sh starts it (embedded SeaweedFS, gunicorn),
with a certificate from the real `s3gate cert self-signed`; real curl and
wget trust it with --cacert / --ca-certificate, as the command tells users to.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from s3gate.embedded import free_port
from tests.integration.helpers import MiB, random_bytes, run, sha256_file
from tests.integration.test_processes import BIN, child_env

pytestmark = pytest.mark.integration

def self_signed(out: Path, *hosts: str) -> tuple[Path, Path]:
    argv = [str(BIN / "s3gate"), "cert", "self-signed", "--out", str(out)]
    for host in hosts:
        argv += ["--host", host]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return out / "cert.pem", out / "key.pem"


@dataclass
class Served:
    proc: subprocess.Popen
    https: str
    http: str  # the redirect port
    port: int
    redirect_port: int
    cert: Path
    user: str
    log: Path


def _stop(proc: subprocess.Popen) -> None:
    children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)] if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops run.sh
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in children:  # by pid: only what this test started
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(root / "tls", "127.0.0.1", "localhost")
    port, redirect_port = free_port(), free_port()
    log = root / "serve.log"
    env = child_env(
        S3GATE_PORT=str(port),
        S3GATE_HTTP_REDIRECT_PORT=str(redirect_port),
        S3GATE_TLS_CERT=str(cert),
        S3GATE_TLS_KEY=str(key),
        S3GATE_EMBEDDED_S3_PORT="0",
        S3GATE_DATA_DIR=str(root / "data"),
        S3GATE_WORKERS="1",
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "s3gate"), "serve"], cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    https = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            probe = subprocess.run(
                ["curl", "-s", "--cacert", str(cert), "-o", "/dev/null", "-w", "%{http_code}", f"{https}/readyz"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            if probe.stdout == "200":
                break
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        password = (root / "data" / "admin-password").read_text().strip()
        yield Served(
            proc, https, f"http://127.0.0.1:{redirect_port}", port, redirect_port, cert, f"admin:{password}", log
        )
    finally:
        _stop(proc)


async def test_upload_and_download_over_https_with_curl_and_wget(served, tmp_path):
    src = tmp_path / "tls.bin"
    src.write_bytes(random_bytes(6 * MiB))
    url = f"{served.https}/files/files/tls.bin"
    up = await run("curl", "-sS", "--fail", "--cacert", served.cert, "-u", served.user, "-T", src, url)
    assert up.rc == 0, up.errtext
    assert sha256_file(src) in up.text
    down = tmp_path / "down.bin"
    got = await run("curl", "-sS", "--fail", "--cacert", served.cert, "-u", served.user, "-o", down, url)
    assert got.rc == 0, got.errtext
    assert sha256_file(down) == sha256_file(src)

    # wget -c resumes a partial file with a Range request over the same TLS.
    partial = tmp_path / "wget" / "tls.bin"
    partial.parent.mkdir()
    partial.write_bytes(src.read_bytes()[: 2 * MiB + 17])
    user, _, password = served.user.partition(":")
    resumed = await run(
        "wget", "-q", "-c", f"--ca-certificate={served.cert}", f"--user={user}", f"--password={password}",
        "--auth-no-challenge", "-S", url, cwd=partial.parent,
    )  # fmt: skip
    assert resumed.rc == 0, resumed.errtext
    assert "206 Partial Content" in resumed.errtext, resumed.errtext
    assert sha256_file(partial) == sha256_file(src)

    # The certificate is what clients check: without --cacert curl refuses it.
    untrusted = await run("curl", "-sS", "-o", "/dev/null", f"{served.https}/healthz")
    assert untrusted.rc == 60, untrusted.errtext  # CURLE_PEER_FAILED_VERIFICATION
    # And the TLS port does not answer plain HTTP.
    plain = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{served.port}/healthz")
    assert plain.text != "200"


async def test_redirect_port_answers_308_keeping_put(served, tmp_path):
    src = tmp_path / "via-redirect.bin"
    src.write_bytes(random_bytes(2 * MiB))  # with Expect: 100-continue, as curl sends for such a body
    up = await run(
        "curl", "-sS", "--fail", "-L", "--location-trusted", "--cacert", served.cert, "-u", served.user,
        "-w", "%{num_redirects} %{response_code}", "-o", "/dev/null",
        "-T", src, f"{served.http}/files/files/via-redirect.bin?x=1",
    )  # fmt: skip
    assert up.rc == 0, up.errtext
    assert up.text == "1 201", up.text
    down = await run("curl", "-sS", "--fail", "--cacert", served.cert, "-u", served.user,
                     f"{served.https}/files/files/via-redirect.bin")  # fmt: skip
    assert down.out == src.read_bytes()

    # The Location: same host name as asked (port swapped), path and query as sent.
    for host in ("127.0.0.1", "localhost"):
        head = await run(
            "curl", "-sS", "-o", "/dev/null", "-w", "%{response_code} %{redirect_url}", "-X", "DELETE",
            "-H", f"Host: {host}:{served.redirect_port}", f"{served.http}/files/files/a%20b.txt?mode=proxy&x=%2F",
        )  # fmt: skip
        assert head.text == f"308 https://{host}:{served.port}/files/files/a%20b.txt?mode=proxy&x=%2F", head.text
    # The redirect port serves nothing itself, not even with credentials.
    direct = await run("curl", "-sS", "-u", served.user, "-o", "/dev/null", "-w", "%{response_code}",
                       f"{served.http}/files/files/via-redirect.bin")  # fmt: skip
    assert direct.text == "308"
    assert "Traceback" not in served.log.read_text()


@pytest.mark.parametrize("problem", ["mismatched", "missing", "not-pem", "only-cert"])
def test_bad_certificate_settings_refused_with_one_line(tmp_path, problem):
    cert, key = self_signed(tmp_path / "a", "127.0.0.1")
    _, other_key = self_signed(tmp_path / "b", "127.0.0.1")
    settings = {
        "mismatched": {"S3GATE_TLS_CERT": str(cert), "S3GATE_TLS_KEY": str(other_key)},
        "missing": {"S3GATE_TLS_CERT": str(tmp_path / "nope.pem"), "S3GATE_TLS_KEY": str(key)},
        "not-pem": {"S3GATE_TLS_CERT": str(key), "S3GATE_TLS_KEY": str(key)},
        "only-cert": {"S3GATE_TLS_CERT": str(cert)},
    }[problem]
    expected = {
        "mismatched": f"tls_key: {other_key} is not the key of the certificate in {cert}",
        "missing": f"tls_cert: cannot read {tmp_path / 'nope.pem'} (No such file or directory)",
        "not-pem": "tls_cert/tls_key: ",
        "only-cert": "tls_cert and tls_key go together",
    }[problem]
    env = child_env(S3GATE_DATA_DIR=str(tmp_path / "data"), S3GATE_EMBEDDED_S3_PORT="0", **settings)
    res = subprocess.run(
        [str(BIN / "s3gate"), "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("s3gate: configuration error: "), res.stderr
    assert expected in lines[0], lines[0]
    assert res.stdout == ""  # nothing started
    assert not (tmp_path / "data").exists()
