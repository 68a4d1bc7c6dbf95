"""A workspace's dedicated IPs: listing and release (mailboxes move, the IP cools down)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from adbtd.db.models import DedicatedIp, Mailbox
from adbtd.errors import Conflict, NotFound
from adbtd.ids import check_id
from adbtd.services import billing, inventory, node_sync, workspaces
from adbtd.services.mailboxes import ip_loads, spread


@dataclass(frozen=True, slots=True)
class ReleasedIp:
    address: str
    cancelled_subscription: bool
    moved_mailboxes: int


def list_ips(session: Session, *, workspace_id: str) -> list[DedicatedIp]:
    """The addresses the workspace holds (reserved by a pending order, or assigned)."""
    return inventory.workspace_ips(session, workspace_id=workspace_id)


def get_ip(session: Session, *, workspace_id: str, ip_id: str) -> DedicatedIp:
    """One address this workspace holds: a malformed id is 400, anything else 404."""
    ip = session.get(DedicatedIp, check_id(ip_id, "ip", "dedicated IP"))
    if ip is None or ip.workspace_id != workspace_id or ip.status not in inventory.HELD_STATUSES:
        raise NotFound("dedicated IP not found")
    return ip


def workspace_has_ip(session: Session, *, workspace_id: str) -> bool:
    return bool(inventory.workspace_ips(session, workspace_id=workspace_id))


def release_ip(
    session: Session, *, workspace_id: str, ip_id: str, cooldown_days: float
) -> ReleasedIp:
    """Release an address: its mailboxes move to the workspace's other assigned IPs first.

    Refused (409) while the address's order is still pending, or when mailboxes sit on it and
    no other assigned IP is left to take them.
    """
    # Two releases at once must not each move the mailboxes onto the other's IP, nor a domain
    # or mailbox order count on an IP going away: the workspace lock serializes them.
    workspaces.lock_workspace(session, workspace_id)
    inventory.workspace_ips(session, workspace_id=workspace_id, lock=True)
    ip = get_ip(session, workspace_id=workspace_id, ip_id=ip_id)
    if ip.status != inventory.ASSIGNED:
        raise Conflict("this IP is still being provisioned; release it once its order completes")
    mailboxes = list(session.scalars(select(Mailbox).where(Mailbox.ip_id == ip.id)))
    others = [
        other.id
        for other in inventory.workspace_ips(
            session, workspace_id=workspace_id, statuses=(inventory.ASSIGNED,)
        )
        if other.id != ip.id
    ]
    if mailboxes and not others:
        raise Conflict(
            f"releasing {ip.address} would leave {len(mailboxes)} mailbox(es) without an IP; "
            "order another IP or delete the mailboxes first"
        )
    for mailbox, target in zip(
        mailboxes, spread(ip_loads(session, ip_ids=others), len(mailboxes)), strict=True
    ):
        mailbox.ip_id = target
    address = ip.address
    inventory.start_cooldown(ip, cooldown_days=cooldown_days)
    session.flush()
    counts = billing.sync_quantities(session, workspace_id)
    node_sync.mark_node_changed(session)
    return ReleasedIp(
        address=address,
        cancelled_subscription=counts["ip"] == 0,
        moved_mailboxes=len(mailboxes),
    )
