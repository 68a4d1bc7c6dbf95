"""Secrets a node needs: DKIM keys and their DNS record, mailbox passwords and Dovecot hashes.

Hashes carry Dovecot's scheme prefix so they go into the passwd-file as they are.
"""

from __future__ import annotations

import base64
import secrets
from typing import Literal

import argon2
import bcrypt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DKIM_KEY_BITS = 2048
DEFAULT_BCRYPT_COST = 10
BCRYPT_MAX_BYTES = 72  # bcrypt ignores (the package refuses) anything longer
PASSWORD_BYTES = 24  # 192 bits, 32 URL-safe characters

PasswordScheme = Literal["BLF-CRYPT", "ARGON2ID"]


def generate_dkim_key() -> str:
    """A fresh 2048-bit RSA private key, PKCS#8 PEM, as OpenDKIM and dkimpy read it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=DKIM_KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode("ascii")


def dkim_public_record(private_pem: str) -> str:
    """The TXT value to publish at ``<selector>._domainkey.<domain>``."""
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def generate_mailbox_password() -> str:
    """A strong URL-safe password (32 characters) for a new mailbox."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_mailbox_password(
    plain: str, *, scheme: PasswordScheme = "BLF-CRYPT", cost: int = DEFAULT_BCRYPT_COST
) -> str:
    """A Dovecot passwd-file hash: ``{BLF-CRYPT}$2b$…`` (bcrypt) or ``{ARGON2ID}$argon2id$…``."""
    raw = plain.encode("utf-8")
    if scheme == "ARGON2ID":
        return "{ARGON2ID}" + argon2.PasswordHasher().hash(raw)
    if len(raw) > BCRYPT_MAX_BYTES:
        raise ValueError(f"bcrypt takes at most {BCRYPT_MAX_BYTES} bytes; use ARGON2ID")
    return "{BLF-CRYPT}" + bcrypt.hashpw(raw, bcrypt.gensalt(rounds=cost)).decode("ascii")
