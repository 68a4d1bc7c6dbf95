"""Domains: listing and deletion with their mailboxes (records to publish: ``dns_verify``).

Domains are created by orders (``adbtd.services.orders``). A domain is ``pending_provision``
until the worker gives it a DKIM key, then ``unverified`` until DNS verification says otherwise.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from adbtd.db.models import Domain, Mailbox
from adbtd.errors import NotFound
from adbtd.ids import check_id
from adbtd.services import billing, node_sync, workspaces

PENDING = "pending_provision"
UNVERIFIED = "unverified"


def list_domains(session: Session, *, workspace_id: str) -> list[Domain]:
    """The workspace's domains, oldest first."""
    stmt = (
        select(Domain)
        .where(Domain.workspace_id == workspace_id)
        .order_by(Domain.created_at, Domain.name)
    )
    return list(session.scalars(stmt))


def get_domain(session: Session, *, workspace_id: str, domain_id: str) -> Domain:
    """One domain of this workspace: a malformed id is 400, anything else 404."""
    domain = session.get(Domain, check_id(domain_id, "dom", "domain"))
    if domain is None or domain.workspace_id != workspace_id:
        raise NotFound("domain not found")
    return domain


def workspace_has_domain(session: Session, *, workspace_id: str) -> bool:
    stmt = select(func.count()).select_from(Domain).where(Domain.workspace_id == workspace_id)
    return bool(session.scalar(stmt))


def domain_exists(session: Session, *, name: str) -> bool:
    """Whether any workspace on the platform holds ``name``."""
    return session.scalar(select(Domain.id).where(Domain.name == name)) is not None


def delete_domain(session: Session, *, workspace_id: str, domain_id: str) -> list[str]:
    """Delete a domain and its mailboxes; returns the ids of the mailboxes that went with it."""
    workspaces.lock_workspace(session, workspace_id)
    domain = get_domain(session, workspace_id=workspace_id, domain_id=domain_id)
    deleted = list(session.scalars(select(Mailbox.id).where(Mailbox.domain_id == domain.id)))
    session.execute(
        delete(Mailbox)
        .where(Mailbox.domain_id == domain.id)
        .execution_options(synchronize_session=False)
    )
    session.delete(domain)
    session.flush()
    billing.sync_quantities(session, workspace_id)
    node_sync.mark_node_changed(session)
    return deleted
