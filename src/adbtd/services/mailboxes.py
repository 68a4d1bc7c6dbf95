"""Mailboxes: created pending by an order, activated by the worker, deleted at once.

Every mailbox is bound to one of its workspace's dedicated IPs (``ip_id``): that address is its
SMTP and IMAP host and the source of its outbound mail. New mailboxes go to the least-loaded IP.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adbtd.clock import utcnow
from adbtd.db.models import DedicatedIp, Mailbox
from adbtd.errors import NotFound
from adbtd.ids import check_id, new_id
from adbtd.services import billing, node_sync, workspaces
from adbtd.services.secretbox import SecretBox

PENDING = "pending_provision"
ACTIVE = "active"
PASSWORD_PURPOSE = "mailbox-password"  # noqa: S105 - a key-derivation label


def list_mailboxes(session: Session, *, workspace_id: str) -> list[tuple[Mailbox, str | None]]:
    """The workspace's mailboxes with their IP address, oldest first."""
    stmt = (
        select(Mailbox, DedicatedIp.address)
        .outerjoin(DedicatedIp, DedicatedIp.id == Mailbox.ip_id)
        .where(Mailbox.workspace_id == workspace_id)
        .order_by(Mailbox.created_at, Mailbox.email)
    )
    return [(row[0], row[1]) for row in session.execute(stmt)]


def get_mailbox(session: Session, *, workspace_id: str, mailbox_id: str) -> Mailbox:
    """One mailbox of this workspace: a malformed id is 400, anything else 404."""
    mailbox = session.get(Mailbox, check_id(mailbox_id, "mb", "mailbox"))
    if mailbox is None or mailbox.workspace_id != workspace_id:
        raise NotFound("mailbox not found")
    return mailbox


def mailbox_address(session: Session, mailbox: Mailbox) -> str | None:
    """The IP address a mailbox connects through."""
    if mailbox.ip_id is None:
        return None
    return session.scalar(select(DedicatedIp.address).where(DedicatedIp.id == mailbox.ip_id))


def delete_mailbox(session: Session, *, workspace_id: str, mailbox_id: str) -> str:
    """Delete a mailbox; the node drops its login and mail on its next reconcile."""
    workspaces.lock_workspace(session, workspace_id)
    mailbox = get_mailbox(session, workspace_id=workspace_id, mailbox_id=mailbox_id)
    email = mailbox.email
    session.delete(mailbox)
    session.flush()
    billing.sync_quantities(session, workspace_id)
    node_sync.mark_node_changed(session)
    return email


def mailbox_password(session: Session, *, email: str, secret_key: str) -> str:
    """The plaintext password of an active mailbox (for the dashboard and the operator)."""
    mailbox = session.scalar(select(Mailbox).where(Mailbox.email == email.strip().lower()))
    if mailbox is None:
        raise NotFound(f"mailbox {email!r} not found")
    if mailbox.password_encrypted is None:
        raise NotFound(f"mailbox {email!r} is not provisioned yet")
    return SecretBox(secret_key, PASSWORD_PURPOSE).open(mailbox.password_encrypted)


def ip_loads(session: Session, *, ip_ids: list[str]) -> Counter[str]:
    """How many mailboxes each of these IPs carries."""
    loads: Counter[str] = Counter({ip_id: 0 for ip_id in ip_ids})
    stmt = (
        select(Mailbox.ip_id, func.count()).where(Mailbox.ip_id.in_(ip_ids)).group_by(Mailbox.ip_id)
    )
    for ip_id, count in session.execute(stmt):
        if ip_id is not None:
            loads[ip_id] = count
    return loads


def spread(loads: Counter[str], count: int) -> list[str]:
    """Pick an IP for each of ``count`` new mailboxes, least-loaded first (pure)."""
    if not loads:
        return []
    picks: list[str] = []
    for _ in range(count):
        ip_id = min(loads, key=lambda key: (loads[key], key))
        loads[ip_id] += 1
        picks.append(ip_id)
    return picks


def add_pending_mailboxes(
    session: Session,
    *,
    workspace_id: str,
    order_id: str,
    emails: list[str],
    domain_ids: dict[str, str],
    ip_ids: list[str],
) -> list[Mailbox]:
    """Create pending mailboxes, each bound to one of ``ip_ids`` (the caller checked the rules)."""
    picks = spread(ip_loads(session, ip_ids=ip_ids), len(emails))
    now = utcnow()
    mailboxes = [
        Mailbox(
            id=new_id("mb"),
            workspace_id=workspace_id,
            domain_id=domain_ids[email.rpartition("@")[2]],
            ip_id=ip_id,
            order_id=order_id,
            email=email,
            status=PENDING,
            created_at=now,
        )
        for email, ip_id in zip(emails, picks, strict=True)
    ]
    session.add_all(mailboxes)
    return mailboxes


def existing_emails(session: Session, *, emails: list[str]) -> list[str]:
    """Which of these addresses already exist on the platform."""
    if not emails:
        return []
    return sorted(session.scalars(select(Mailbox.email).where(Mailbox.email.in_(emails))))
