"""Certificates for direct TLS: `s3gate cert self-signed`, and the check of tls_cert/tls_key at start.

A self-signed certificate is for local use and tests: clients trust it
explicitly (``curl --cacert cert.pem``, ``wget --ca-certificate=cert.pem``).
For a public name, use a CA's certificate (Let's Encrypt via certbot, see the
README's "Deploying") and point tls_cert/tls_key at it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import ssl
import sys
from pathlib import Path

from .errors import ConfigError
from .private import write_private
from .settings import valid_host

DEFAULT_DAYS = 365


def register(subparsers) -> None:
    p = subparsers.add_parser("cert", help="certificates for direct TLS (tls_cert, tls_key)")
    sub = p.add_subparsers(dest="cert_command", metavar="KIND", required=True)
    s = sub.add_parser("self-signed", help="write a self-signed certificate and key (for local use and tests)")
    s.add_argument(
        "--host", action="append", required=True, metavar="NAME", help="DNS name or IP address clients use (repeatable)"
    )
    s.add_argument("--out", default=".", metavar="DIR", help="directory for cert.pem and key.pem (default: .)")
    s.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity in days (default {DEFAULT_DAYS})")
    s.add_argument("--force", action="store_true", help="replace an existing cert.pem / key.pem")
    s.set_defaults(func=self_signed_command)


def _san(name: str):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name.removeprefix("[").removesuffix("]")))
    except ValueError:
        return x509.DNSName(name.rstrip(".").lower())


def new_key():
    """An ECDSA P-256 key: small, fast, accepted by every TLS client in use."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def certificate(
    key,
    common_name: str,
    *,
    hosts: list[str] | tuple[str, ...] = (),
    issuer=None,
    ca: bool = False,
    client: bool = False,
    days: int = DEFAULT_DAYS,
):
    """A certificate for ``key``: self-signed, or signed by ``issuer`` = (CA certificate, CA key).

    ``hosts`` go into the SAN (clients match only the SAN: RFC 6125 section
    6.4.4; CN is ignored); ``ca``: a CA that signs end certificates only;
    ``client``: usable for mutual TLS too.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # a client whose clock is a little behind
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
    if not ca:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, *([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    """Unencrypted PKCS#8: the file's 0600 mode is its protection (as for nginx's keys)."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def self_signed(hosts: list[str], days: int = DEFAULT_DAYS) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for HOSTS: an ECDSA P-256 key, SAN with every name."""
    key = new_key()
    return cert_pem(certificate(key, hosts[0], hosts=hosts, days=days)), key_pem(key)


def self_signed_command(args: argparse.Namespace) -> int:
    bad = [h for h in args.host if not valid_host(h)]
    if bad:
        print(f"s3gate cert: not a host name or IP address: {', '.join(bad)}", file=sys.stderr)
        return 2
    if not 1 <= args.days <= 3650:
        print("s3gate cert: --days must be between 1 and 3650", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    cert_path, key_path = out / "cert.pem", out / "key.pem"
    existing = [str(p) for p in (cert_path, key_path) if p.exists()]
    if existing and not args.force:
        print(f"s3gate cert: {' and '.join(existing)} already exist(s); --force replaces them", file=sys.stderr)
        return 1
    cert_pem, key_pem = self_signed(args.host, args.days)
    try:
        write_private(key_path, key_pem, exclusive=not args.force)  # 0600 from its first byte
        with open(cert_path, "wb" if args.force else "xb") as fh:  # public: clients need it to trust it
            fh.write(cert_pem)
    except OSError as exc:
        print(f"s3gate cert: cannot write {exc.filename} ({exc.strerror})", file=sys.stderr)
        return 1
    host = args.host[0]
    url_host = f"[{host}]" if ":" in host else host
    print(
        f"Wrote {cert_path} and {key_path} (mode 0600), valid {args.days} days for: {', '.join(args.host)}\n"
        "\n"
        "Serve HTTPS with them (config/s3gate.toml, or S3GATE_TLS_CERT / S3GATE_TLS_KEY):\n"
        f'    tls_cert = "{cert_path}"\n'
        f'    tls_key = "{key_path}"\n'
        "\n"
        "Clients trust this certificate explicitly (it is self-signed):\n"
        f"    curl --cacert {cert_path} https://{url_host}:PORT/healthz\n"
        f"    wget --ca-certificate={cert_path} https://{url_host}:PORT/healthz"
    )
    return 0


def check_pair(cert: str, key: str) -> str | None:
    """ConfigError (one line) unless CERT and KEY are readable PEM files that belong together.

    Returns a warning when the certificate has expired or is not yet valid
    (the gateway starts anyway: refusing to start would turn a certificate
    problem into an outage of plain clients that skip verification).
    """
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path} ({exc.strerror})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # What gunicorn's worker will do; password="" so an encrypted key fails here instead of prompting.
        context.load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ConfigError(f"tls_key: {key} is not the key of the certificate in {cert}") from None
        raise ConfigError(
            f"tls_cert/tls_key: {cert} and {key} must be a PEM certificate and its unencrypted PEM key "
            f"({exc.reason or exc})"
        ) from None
    from cryptography import x509

    with open(cert, "rb") as fh:
        first = x509.load_pem_x509_certificate(fh.read())
    now = dt.datetime.now(dt.UTC)
    if now > first.not_valid_after_utc:
        return f"tls_cert: the certificate in {cert} expired on {first.not_valid_after_utc:%Y-%m-%d}"
    if now < first.not_valid_before_utc:
        return f"tls_cert: the certificate in {cert} is valid only from {first.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None
