"""The dedicated IP inventory: free → reserved (by an order) → assigned → cooldown → free.

Each address belongs to one mail node (the one that binds it). A workspace's addresses all
come from one node, as its mailboxes' mail is stored on the node that serves them: its first
order takes the node with the most free addresses, later orders stay on that node.

Reservations are atomic: PostgreSQL locks the chosen rows with ``FOR UPDATE SKIP LOCKED`` so
concurrent orders pick disjoint addresses; SQLite transactions already hold the write lock from
``BEGIN IMMEDIATE`` (see ``adbtd.db.engine``), which serializes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from adbtd.clock import utcnow
from adbtd.db.models import DedicatedIp
from adbtd.errors import InventoryUnavailable, ValidationFailed
from adbtd.ids import new_id
from adbtd.settings import DEFAULT_NODE, expand_ip_item

FREE = "free"
RESERVED = "reserved"
ASSIGNED = "assigned"
COOLDOWN = "cooldown"
HELD_STATUSES = (RESERVED, ASSIGNED)


@dataclass(frozen=True, slots=True)
class AddedAddresses:
    added: list[str]
    already_present: list[str]


def expand_items(items: list[str]) -> list[str]:
    """Expand ranges, CIDRs and addresses, keeping order and dropping repeats."""
    addresses: list[str] = []
    for item in items:
        for part in item.replace(",", " ").split():
            try:
                addresses.extend(expand_ip_item(part))
            except ValueError as exc:
                raise ValidationFailed(f"not an IPv4 address, range or network: {part!r}") from exc
    return list(dict.fromkeys(addresses))


def add_addresses(
    session: Session, *, items: list[str], node: str = DEFAULT_NODE
) -> AddedAddresses:
    """Put addresses into the inventory as free on ``node``; ones already known (on any node)
    are left as they are: an address carrying mail is not moved by adding it again."""
    wanted = expand_items(items)
    known: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        known.update(
            session.scalars(select(DedicatedIp.address).where(DedicatedIp.address.in_(chunk)))
        )
    added = [address for address in wanted if address not in known]
    session.add_all(DedicatedIp(id=new_id("ip"), address=a, node=node, status=FREE) for a in added)
    session.flush()
    return AddedAddresses(added=added, already_present=[a for a in wanted if a in known])


def sync_pool(session: Session, *, ip_pool: str, node: str = DEFAULT_NODE) -> AddedAddresses:
    """Make every address of ``settings.ip_pool`` part of the inventory on ``node``
    (idempotent)."""
    if not ip_pool.strip():
        return AddedAddresses([], [])
    return add_addresses(session, items=[ip_pool], node=node)


def _available(now: datetime) -> ColumnElement[bool]:
    """Free, or cooled down long enough to be free again."""
    return or_(
        DedicatedIp.status == FREE,
        and_(DedicatedIp.status == COOLDOWN, DedicatedIp.cooldown_until <= now),
    )


def available_by_node(session: Session) -> dict[str, int]:
    """How many addresses an order could reserve right now, per node (nodes with none left
    out)."""
    rows = session.execute(
        select(DedicatedIp.node, func.count())
        .where(_available(utcnow()))
        .group_by(DedicatedIp.node)
    )
    return {node: count for node, count in rows}


def available_count(session: Session) -> int:
    """How many addresses an order could reserve right now, on all nodes together."""
    return sum(available_by_node(session).values())


def workspace_node(session: Session, *, workspace_id: str) -> str | None:
    """The node of the addresses the workspace holds (None while it holds none)."""
    return session.scalar(
        select(DedicatedIp.node)
        .where(DedicatedIp.workspace_id == workspace_id, DedicatedIp.status.in_(HELD_STATUSES))
        .order_by(DedicatedIp.address)
        .limit(1)
    )


def reserve_ips(
    session: Session, *, workspace_id: str, order_id: str, count: int
) -> list[DedicatedIp]:
    """Reserve ``count`` free addresses for an order, all or none (503 when short), on the
    workspace's node; a workspace holding none takes the node with the most free ones."""
    home = workspace_node(session, workspace_id=workspace_id)
    if home is not None:
        candidates = [home]
    else:
        free = available_by_node(session)
        candidates = sorted(free, key=lambda node: (-free[node], node))
    best = 0
    for node in candidates:
        chosen = _lock_free(session, node=node, count=count)
        if len(chosen) == count:
            return _reserve(session, chosen, workspace_id=workspace_id, order_id=order_id)
        best = max(best, len(chosen))
    where = "on the workspace's mail node" if home is not None else "on any one mail node"
    raise InventoryUnavailable(
        f"not enough free dedicated IPs {where}: asked for {count}, {best} available"
    )


def _lock_free(session: Session, *, node: str, count: int) -> list[DedicatedIp]:
    """Up to ``count`` available addresses of ``node``, locked for this transaction; rows
    another transaction holds are skipped, so concurrent orders pick disjoint addresses."""
    stmt = (
        select(DedicatedIp)
        .where(_available(utcnow()), DedicatedIp.node == node)
        .order_by(DedicatedIp.address)
        .limit(count)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(stmt))


def _reserve(
    session: Session, chosen: list[DedicatedIp], *, workspace_id: str, order_id: str
) -> list[DedicatedIp]:
    for ip in chosen:
        ip.status = RESERVED
        ip.workspace_id = workspace_id
        ip.order_id = order_id
        ip.allocated_at = None
        ip.released_at = None
        ip.cooldown_until = None  # reputation stays: it belongs to the address, not the tenant
    session.flush()
    return chosen


def unreserve(session: Session, *, order_id: str) -> int:
    """Give a failed order's still-reserved addresses back as free (they never carried mail)."""
    ips = session.scalars(
        select(DedicatedIp).where(DedicatedIp.order_id == order_id, DedicatedIp.status == RESERVED)
    ).all()
    for ip in ips:
        ip.status = FREE
        ip.workspace_id = None
        ip.order_id = None
    return len(ips)


def assign_reserved(session: Session, *, order_id: str) -> list[DedicatedIp]:
    """Turn an order's reservations into assignments (idempotent)."""
    now = utcnow()
    ips = session.scalars(
        select(DedicatedIp).where(DedicatedIp.order_id == order_id, DedicatedIp.status == RESERVED)
    ).all()
    for ip in ips:
        ip.status = ASSIGNED
        ip.allocated_at = now
    return list(ips)


def start_cooldown(ip: DedicatedIp, *, cooldown_days: float) -> None:
    """Release an address from its workspace; it rests before any other order can take it."""
    now = utcnow()
    ip.status = COOLDOWN
    ip.workspace_id = None
    ip.order_id = None
    ip.released_at = now
    ip.cooldown_until = now + timedelta(days=cooldown_days)


def workspace_ips(
    session: Session,
    *,
    workspace_id: str,
    statuses: tuple[str, ...] = HELD_STATUSES,
    lock: bool = False,
) -> list[DedicatedIp]:
    """The addresses a workspace holds, in address order; ``lock`` holds them until commit."""
    stmt = (
        select(DedicatedIp)
        .where(DedicatedIp.workspace_id == workspace_id, DedicatedIp.status.in_(statuses))
        .order_by(DedicatedIp.address)
    )
    if lock:
        stmt = stmt.with_for_update()
    return list(session.scalars(stmt))
