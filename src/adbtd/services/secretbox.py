"""Encrypt secrets we must read back (mailbox passwords, DKIM keys) with AES-GCM.

The key is derived from ``ADBTD_SECRET_KEY`` with HKDF, one purpose string per use, so a leak of
one derived key does not open the others.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
NONCE_BYTES = 12


class SecretBox:
    """Seal and open small secrets; output is ``v1.<base64(nonce + ciphertext)>``."""

    def __init__(self, secret_key: str, purpose: str) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        self._aead = AESGCM(hkdf.derive(secret_key.encode()))
        self._aad = purpose.encode()

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._aad)
        return f"{VERSION}." + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, token: str) -> str:
        version, _, body = token.partition(".")
        if version != VERSION:
            raise ValueError("unknown secret box version")
        raw = base64.urlsafe_b64decode(body.encode())
        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad).decode()
        except InvalidTag as exc:
            raise ValueError("secret cannot be opened with this key") from exc
