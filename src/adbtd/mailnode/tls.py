"""The node's TLS certificate: the operator's files when configured, else a self-signed pair
made once with ``cryptography`` and kept under ``base_dir/tls`` so restarts reuse it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adbtd.mailnode.layout import NodeLayout
from adbtd.mailnode.state import NodeConfig

SELF_SIGNED_CERT = "selfsigned.crt"
SELF_SIGNED_KEY = "selfsigned.key"
VALIDITY_DAYS = 3650


def tls_paths(config: NodeConfig) -> tuple[Path, Path]:
    """(certificate, key) the daemons use; pure, so rendering can name them."""
    if config.tls_cert_file and config.tls_key_file:
        return config.tls_cert_file, config.tls_key_file
    tls_dir = NodeLayout(config.base_dir).tls_dir
    return tls_dir / SELF_SIGNED_CERT, tls_dir / SELF_SIGNED_KEY


def ensure_tls(config: NodeConfig) -> tuple[Path, Path]:
    """Make sure the certificate and key exist; generate the self-signed pair if needed."""
    cert_path, key_path = tls_paths(config)
    if config.tls_cert_file and config.tls_key_file:
        for path in (cert_path, key_path):
            if not path.is_file():
                raise FileNotFoundError(f"configured TLS file {path} does not exist")
        return cert_path, key_path
    if not (cert_path.is_file() and key_path.is_file()):
        cert_pem, key_pem = self_signed_pair(config.hostname)
        cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
    return cert_path, key_path


def self_signed_pair(hostname: str) -> tuple[bytes, bytes]:
    """A P-256 certificate for ``hostname`` (plus loopback) and its PKCS#8 key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create with the final mode from the start, so a key is never briefly readable."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
