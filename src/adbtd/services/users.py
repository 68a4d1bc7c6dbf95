"""Dashboard users: sign-up, argon2id passwords, sessions, sign-in limits and memberships.

A session cookie holds a random token; the table keeps only its SHA-256, like API keys. Every
sign-in makes a new token (no session fixation) and sign-out deletes it. Failed sign-ins are
counted per account and per client address in a fixed window, in the database so that every
process of a deployment sees the same counts.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from adbtd.clock import utcnow
from adbtd.db.models import DashboardSession, LoginThrottle, Membership, User, Workspace
from adbtd.errors import Conflict, LoginLimited, NotFound, ValidationFailed
from adbtd.ids import new_id
from adbtd.services import workspaces
from adbtd.settings import Settings

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_HASHER = PasswordHasher()
# Checked when the account does not exist, so both wrong answers take the same time.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new session; ``token`` goes into the cookie and is never stored."""

    token: str
    user_id: str
    workspace_id: str | None


@dataclass(frozen=True, slots=True)
class CurrentUser:
    user_id: str
    email: str
    workspace_id: str | None
    session_hash: str


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if len(email) > 320 or not _EMAIL.fullmatch(email):
        raise ValidationFailed("enter a valid email address")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(f"the password may have at most {MAX_PASSWORD_LENGTH} characters")


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def slug_for(session: Session, name: str) -> str:
    """A free workspace slug made from its name (``Acme Mail`` → ``acme-mail``)."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-") or "workspace"
    slug = base
    while session.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


def hash_password(password: str) -> str:
    """Check the password's length and hash it (argon2id, the slow part of a sign-up: call it
    before the transaction, not inside it)."""
    check_password(password)
    return _HASHER.hash(password)


def sign_up(
    session: Session,
    *,
    email: str,
    password_hash: str,
    workspace_name: str,
    billing_provider: str,
) -> User:
    """Create a user (with the hash ``hash_password`` made), their workspace and the
    membership joining them."""
    email = normalize_email(email)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists; sign in instead")
    workspace = workspaces.create_workspace(
        session,
        slug=slug_for(session, workspace_name),
        name=workspace_name,
        billing_provider=billing_provider,
    )
    now = utcnow()
    user = User(id=new_id("usr"), email=email, password_hash=password_hash, created_at=now)
    session.add(user)
    session.flush()
    session.add(
        Membership(user_id=user.id, workspace_id=workspace.id, role="owner", created_at=now)
    )
    session.flush()
    return user


@dataclass(frozen=True, slots=True)
class SignInAttempt:
    """A sign-in in progress: who, from where, and the stored hash (None: no such account)."""

    email: str
    client_ip: str
    password_hash: str | None


def begin_sign_in(
    session: Session, *, email: str, client_ip: str, settings: Settings
) -> SignInAttempt:
    """Read-only first step: ``LoginLimited`` while the account or the address is over its
    failure limit; else the account's hash, to be verified outside any transaction."""
    email = email.strip().lower()
    _refuse_if_limited(session, _limits(email, client_ip, settings), settings.login_window_seconds)
    stored = session.scalar(select(User.password_hash).where(User.email == email))
    return SignInAttempt(email, client_ip, stored)


def password_matches(attempt: SignInAttempt, password: str) -> bool:
    """The slow argon2 check (run it with no transaction open). An unknown account is checked
    against a dummy hash, so both wrong answers take the same time."""
    matched = _verify(attempt.password_hash or _DUMMY_HASH, password)
    return matched and attempt.password_hash is not None


def finish_sign_in(
    session: Session, *, attempt: SignInAttempt, matched: bool, password: str, settings: Settings
) -> User | None:
    """Record the outcome: a failure is counted (atomically, for every process at once); a
    success clears the account's count. None on a failure, or if the account changed since."""
    if not matched:
        _count_failure(session, list(_limits(attempt.email, attempt.client_ip, settings)), settings)
        return None
    user = session.scalar(select(User).where(User.email == attempt.email))
    if user is None or user.password_hash != attempt.password_hash:
        return None  # deleted or re-passworded meanwhile: sign in again
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == f"account:{attempt.email}"))
    if _HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = _HASHER.hash(password)
    user.last_login_at = utcnow()
    return user


def _limits(email: str, client_ip: str, settings: Settings) -> dict[str, int]:
    return {
        f"account:{email}": settings.login_max_failures,
        f"ip:{client_ip}": settings.login_ip_max_failures,
    }


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _refuse_if_limited(session: Session, limits: dict[str, int], window_seconds: float) -> None:
    now = utcnow()
    for key, limit in limits.items():
        row = session.get(LoginThrottle, key)
        if row is None or row.failures < limit:
            continue
        ends = row.window_started_at + timedelta(seconds=window_seconds)
        if ends > now:
            wait = max(1, int((ends - now).total_seconds() + 0.999))
            minutes = max(1, (wait + 59) // 60)
            raise LoginLimited(
                "too many failed sign-in attempts; try again in "
                f"{minutes} minute{'s' if minutes != 1 else ''}",
                retry_after=wait,
            )


def _count_failure(session: Session, keys: list[str], settings: Settings) -> None:
    """One statement per key (insert, or add one / restart the window): concurrent failures
    on PostgreSQL are each counted, where read-modify-write would lose some."""
    now = utcnow()
    window_over = LoginThrottle.window_started_at <= now - timedelta(
        seconds=settings.login_window_seconds
    )
    upsert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for key in keys:
        stmt = upsert(LoginThrottle).values(key=key, failures=1, window_started_at=now)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[LoginThrottle.key],
                set_={
                    "failures": case((window_over, 1), else_=LoginThrottle.failures + 1),
                    "window_started_at": case(
                        (window_over, now), else_=LoginThrottle.window_started_at
                    ),
                },
            )
        )


def start_session(
    session: Session, *, user: User, settings: Settings, replaces: str | None = None
) -> SignedIn:
    """A fresh session for ``user``; the session it replaces (if any) stops working."""
    if replaces:
        end_session(session, token=replaces)
    workspace_id = session.scalar(
        select(Membership.workspace_id)
        .where(Membership.user_id == user.id)
        .order_by(Membership.created_at)
        .limit(1)
    )
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        DashboardSession(
            token_sha256=hash_session_token(token),
            user_id=user.id,
            workspace_id=workspace_id,
            created_at=now,
            expires_at=now + timedelta(hours=settings.session_hours),
        )
    )
    session.flush()
    return SignedIn(token=token, user_id=user.id, workspace_id=workspace_id)


def end_session(session: Session, *, token: str) -> None:
    session.execute(
        delete(DashboardSession).where(DashboardSession.token_sha256 == hash_session_token(token))
    )


def resolve_session(session: Session, *, token: str | None) -> CurrentUser | None:
    """The signed-in user behind a cookie, or None when it is unknown or expired."""
    if not token or len(token) > 100:
        return None
    digest = hash_session_token(token)
    row = session.get(DashboardSession, digest)
    if row is None:
        return None
    if row.expires_at <= utcnow():
        session.delete(row)
        return None
    user = session.get(User, row.user_id)
    if user is None:
        return None
    return CurrentUser(
        user_id=user.id, email=user.email, workspace_id=row.workspace_id, session_hash=digest
    )


def member_workspace(session: Session, *, user_id: str, workspace_id: str) -> Workspace:
    """A workspace this user belongs to; any other id is simply not found."""
    membership = session.get(Membership, (user_id, workspace_id))
    workspace = session.get(Workspace, workspace_id) if membership else None
    if workspace is None:
        raise NotFound("workspace not found")
    return workspace


def switch_workspace(session: Session, *, session_hash: str, workspace_id: str) -> None:
    row = session.get(DashboardSession, session_hash)
    if row is not None:
        row.workspace_id = workspace_id


def user_workspaces(session: Session, *, user_id: str) -> list[Workspace]:
    stmt = (
        select(Workspace)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.created_at)
    )
    return list(session.scalars(stmt))
