"""Domains: listing, the DNS records a customer must publish, and deletion with its mailboxes.

Domains are created by orders (``adbtd.services.orders``). A domain is ``pending_provision``
until the worker gives it a DKIM key, then ``unverified`` until DNS verification says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from adbtd.db.models import Domain, Mailbox
from adbtd.errors import NotFound
from adbtd.ids import looks_like_id
from adbtd.mailnode.keys import dkim_public_record
from adbtd.services import billing, inventory, node_sync
from adbtd.services.dns_records import required_records
from adbtd.services.node_state import DKIM_KEY_PURPOSE
from adbtd.services.secretbox import SecretBox
from adbtd.settings import Settings

PENDING = "pending_provision"
UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True)
class DnsRecord:
    type: str
    name: str
    value: str
    ok: bool


def list_domains(session: Session, *, workspace_id: str) -> list[Domain]:
    """The workspace's domains, oldest first."""
    stmt = (
        select(Domain)
        .where(Domain.workspace_id == workspace_id)
        .order_by(Domain.created_at, Domain.name)
    )
    return list(session.scalars(stmt))


def get_domain(session: Session, *, workspace_id: str, domain_id: str) -> Domain:
    """One domain of this workspace; anything else (other workspace, bad id) is 404."""
    domain = session.get(Domain, domain_id) if looks_like_id(domain_id, "dom") else None
    if domain is None or domain.workspace_id != workspace_id:
        raise NotFound("domain not found")
    return domain


def workspace_has_domain(session: Session, *, workspace_id: str) -> bool:
    stmt = select(func.count()).select_from(Domain).where(Domain.workspace_id == workspace_id)
    return bool(session.scalar(stmt))


def domain_exists(session: Session, *, name: str) -> bool:
    """Whether any workspace on the platform holds ``name``."""
    return session.scalar(select(Domain.id).where(Domain.name == name)) is not None


def delete_domain(session: Session, *, workspace_id: str, domain_id: str) -> int:
    """Delete a domain and its mailboxes; returns how many mailboxes went with it."""
    domain = get_domain(session, workspace_id=workspace_id, domain_id=domain_id)
    result = session.execute(
        delete(Mailbox)
        .where(Mailbox.domain_id == domain.id)
        .execution_options(synchronize_session=False)
    )
    deleted = int(getattr(result, "rowcount", 0) or 0)
    session.delete(domain)
    session.flush()
    billing.sync_quantities(session, workspace_id)
    node_sync.mark_node_changed(session)
    return deleted


def domain_dns_records(session: Session, *, domain: Domain, settings: Settings) -> list[DnsRecord]:
    """The records to publish (``adbtd.services.dns_records``) with the last verification flags.

    SPF covers the workspace's assigned IPs; the DKIM record appears once the key exists.
    """
    addresses = [
        ip.address
        for ip in inventory.workspace_ips(
            session, workspace_id=domain.workspace_id, statuses=(inventory.ASSIGNED,)
        )
    ]
    dkim_public = None
    if domain.dkim_private_key_encrypted is not None:
        box = SecretBox(settings.secret_key, DKIM_KEY_PURPOSE)
        dkim_public = dkim_public_record(box.open(domain.dkim_private_key_encrypted))
    flags = {
        "mx": domain.mx_ok,
        "spf": domain.spf_ok,
        "dkim": domain.dkim_ok,
        "dmarc": domain.dmarc_ok,
    }
    return [
        DnsRecord(record.type, record.name, record.value, flags[record.check])
        for record in required_records(
            domain=domain.name,
            ips=addresses,
            dkim_selector=domain.dkim_selector,
            dkim_record=dkim_public,
            mx_hostname=settings.mx_hostname,
        )
    ]
