"""API keys: made once, stored as a SHA-256 hash, shown by their 8-character prefix."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from adbtd.clock import utcnow
from adbtd.db.key_lookup import KeyLookup
from adbtd.db.models import ApiKey, Workspace
from adbtd.errors import NotFound, Unauthorized, ValidationFailed
from adbtd.ids import check_id, new_id

TOKEN_PREFIX = "adbtd_live_"  # noqa: S105 - a public prefix, not a secret
TOKEN_SECRET_LENGTH = 43  # len(secrets.token_urlsafe(32))
DISPLAY_PREFIX_LENGTH = 8
LAST_USED_RESOLUTION = timedelta(seconds=60)
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key; ``token`` is the only time the plaintext exists outside the client."""

    key: ApiKey
    token: str


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    key_id: str
    key_name: str
    workspace_id: str


def hash_token(token: str) -> str:
    """SHA-256 is right here: the token holds 256 random bits, so no stretching is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_well_formed(token: str) -> bool:
    secret = token.removeprefix(TOKEN_PREFIX)
    return (
        token.startswith(TOKEN_PREFIX)
        and len(secret) == TOKEN_SECRET_LENGTH
        and all(ch in _URLSAFE for ch in secret)
    )


def create_key(session: Session, *, workspace_id: str, name: str) -> CreatedKey:
    """Create a key for the workspace and return its plaintext once."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValidationFailed("key name must be 1-100 characters")
    if session.get(Workspace, workspace_id) is None:
        raise NotFound("workspace not found")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("key"),
        workspace_id=workspace_id,
        name=name,
        display_prefix=token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + DISPLAY_PREFIX_LENGTH],
        token_sha256=hash_token(token),
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    return CreatedKey(key=key, token=token)


def revoke_key(session: Session, *, key_id: str, workspace_id: str | None = None) -> ApiKey:
    """Revoke a key (idempotent); with ``workspace_id`` only that workspace's key is found."""
    key = session.get(ApiKey, check_id(key_id, "key", "API key"))
    if key is None or (workspace_id is not None and key.workspace_id != workspace_id):
        raise NotFound("API key not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def list_keys(session: Session, *, workspace_id: str) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.workspace_id == workspace_id).order_by(ApiKey.created_at)
    return list(session.scalars(stmt))


def resolve_key(lookup: KeyLookup, authorization: str | None) -> tuple[AuthenticatedKey, bool]:
    """The live key of a Bearer header (or ``Unauthorized``), and whether ``last_used_at`` is
    due to be written; reads only."""
    if not authorization:
        raise Unauthorized("missing Authorization header")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not is_well_formed(token):
        raise Unauthorized("malformed Bearer token")
    key = lookup.find(hash_token(token))
    if key is None or key.revoked:
        raise Unauthorized("unknown or revoked API key")
    stale = key.last_used_at is None or utcnow() - key.last_used_at >= LAST_USED_RESOLUTION
    return AuthenticatedKey(key_id=key.id, key_name=key.name, workspace_id=key.workspace_id), stale


def touch_key(session: Session, *, key_id: str) -> None:
    """Record that the key was used now (at most once per ``LAST_USED_RESOLUTION``)."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
