"""Workspaces: the tenant boundary every other resource hangs from."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from adbtd.clock import utcnow
from adbtd.db.models import BillingAccount, Workspace
from adbtd.errors import Conflict, NotFound, ValidationFailed
from adbtd.ids import new_id

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def create_workspace(
    session: Session, *, slug: str, name: str, billing_provider: str = "local"
) -> Workspace:
    """Create a workspace and its (empty) billing account."""
    if not SLUG_PATTERN.fullmatch(slug):
        raise ValidationFailed("slug must be 1-63 lowercase letters, digits or inner hyphens")
    name = name.strip()
    if not 1 <= len(name) <= 200 or any(ch in name for ch in "\r\n\x00"):
        raise ValidationFailed("name must be 1-200 characters on one line")
    if session.scalar(select(Workspace.id).where(Workspace.slug == slug)) is not None:
        raise Conflict(f"workspace {slug!r} already exists")
    workspace = Workspace(
        id=new_id("ws"), slug=slug, name=name, currency="usd", created_at=utcnow()
    )
    session.add(workspace)
    session.flush()
    session.add(BillingAccount(workspace_id=workspace.id, provider=billing_provider))
    session.flush()
    return workspace


def lock_workspace(session: Session, workspace_id: str) -> None:
    """Serialize changes to one workspace's resources (PostgreSQL ``FOR UPDATE`` on its row;
    SQLite's writers are serialized already). Every write service takes it first, before any
    domain, IP or mailbox row, so two changes of one workspace queue instead of racing past
    each other's checks (two first orders, a domain added while its last IP is released) or
    deadlocking on each other's rows."""
    session.execute(select(Workspace.id).where(Workspace.id == workspace_id).with_for_update())


def get_workspace(session: Session, workspace_id: str) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound("workspace not found")
    return workspace


def get_workspace_by_slug(session: Session, slug: str) -> Workspace:
    workspace = session.scalar(select(Workspace).where(Workspace.slug == slug))
    if workspace is None:
        raise NotFound(f"workspace {slug!r} not found")
    return workspace
