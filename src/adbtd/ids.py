"""Public identifiers: a type prefix and a random tail, never sequential."""

from __future__ import annotations

import secrets
import string

from adbtd.errors import ValidationFailed

_ALPHABET = string.ascii_letters + string.digits
ID_TAIL_LENGTH = 20
PREFIXES = frozenset({"ws", "key", "dom", "ip", "mb", "ord", "usr"})


def new_id(prefix: str) -> str:
    """Return ``<prefix>_<20 random base62 chars>`` (about 119 bits)."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(ID_TAIL_LENGTH))


def looks_like_id(value: str, prefix: str) -> bool:
    """Whether ``value`` has the shape of an id of this type (checked before any lookup)."""
    head, sep, tail = value.partition("_")
    return (
        sep == "_"
        and head == prefix
        and len(tail) == ID_TAIL_LENGTH
        and all(ch in _ALPHABET for ch in tail)
    )


def check_id(value: str, prefix: str, noun: str) -> str:
    """``value`` when it has the shape of an id of this type, else 400 (``ValidationFailed``):
    a malformed id is bad input, told apart from a well-formed id that is not found (404)."""
    if not looks_like_id(value, prefix):
        raise ValidationFailed(
            f"{noun} id must be {prefix}_ followed by {ID_TAIL_LENGTH} letters and digits"
        )
    return value
