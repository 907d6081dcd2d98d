"""`s3gate cert self-signed` (issue 11, item 4): the real console script, the files read back by openssl."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from s3gate.certs import check_pair
from s3gate.errors import ConfigError

S3GATE = str(Path(sys.executable).parent / "s3gate")


def cert_command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3GATE_")}
    return subprocess.run(
        [S3GATE, "cert", "self-signed", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def openssl_text(path: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", str(path), "-noout", "-text"], capture_output=True, text=True, check=True
    ).stdout


def test_writes_a_certificate_for_the_names_and_a_private_key(tmp_path):
    done = cert_command("--host", "files.example.test", "--host", "127.0.0.1", "--host", "::1", "--out", "tls",
                        "--days", "30", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    text = openssl_text(cert)
    assert "DNS:files.example.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" in text, text
    assert "CA:FALSE" in text and "TLS Web Server Authentication" in text
    not_after = re.search(r"Not After : (.+)", text)[1].strip()
    expires = dt.datetime.strptime(not_after, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC)
    assert dt.timedelta(days=29) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=30)
    # The key belongs to the certificate (openssl's own comparison of the public keys).
    pub = [
        subprocess.run(argv, capture_output=True, check=True).stdout
        for argv in (["openssl", "x509", "-in", str(cert), "-noout", "-pubkey"], ["openssl", "pkey", "-in", str(key), "-pubout"])
    ]  # fmt: skip
    assert pub[0] == pub[1]
    assert check_pair(str(cert), str(key)) is None
    # What it prints: the two settings and how to trust the certificate.
    assert f'tls_cert = "{cert}"' in done.stdout and f'tls_key = "{key}"' in done.stdout
    assert f"curl --cacert {cert} https://files.example.test:PORT/" in done.stdout


def test_never_replaces_a_key_unless_forced(tmp_path):
    assert cert_command("--host", "localhost", cwd=tmp_path).returncode == 0
    key = (tmp_path / "key.pem").read_bytes()
    again = cert_command("--host", "localhost", cwd=tmp_path)
    assert again.returncode == 1 and "already exist" in again.stderr and "--force" in again.stderr
    assert (tmp_path / "key.pem").read_bytes() == key
    forced = cert_command("--host", "localhost", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "key.pem").read_bytes() != key
    assert oct((tmp_path / "key.pem").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("args", [["--host", "not a host"], ["--host", "localhost", "--days", "0"]])
def test_bad_arguments_are_refused(tmp_path, args):
    done = cert_command(*args, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("s3gate cert: "), done.stderr
    assert not (tmp_path / "key.pem").exists()


def test_check_pair_messages(tmp_path):
    assert cert_command("--host", "localhost", "--out", "a", cwd=tmp_path).returncode == 0
    assert cert_command("--host", "localhost", "--out", "b", cwd=tmp_path).returncode == 0
    a, b = tmp_path / "a", tmp_path / "b"
    with pytest.raises(ConfigError, match=f"tls_key: {b}/key.pem is not the key of the certificate in {a}/cert.pem"):
        check_pair(str(a / "cert.pem"), str(b / "key.pem"))
    with pytest.raises(ConfigError, match="tls_cert: cannot read"):
        check_pair(str(tmp_path / "none.pem"), str(a / "key.pem"))
    # An encrypted key is refused at once rather than prompting for its passphrase.
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(a / "key.pem"), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True,
    )
    with pytest.raises(ConfigError, match="tls_cert/tls_key: .* unencrypted PEM key"):
        check_pair(str(a / "cert.pem"), str(encrypted))
