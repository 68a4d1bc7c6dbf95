"""The dedicated IP inventory: free → reserved (by an order) → assigned → cooldown → free.

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
from adbtd.settings import expand_ip_item

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


def add_addresses(session: Session, *, items: list[str]) -> AddedAddresses:
    """Put addresses into the inventory as free; ones already known are left as they are."""
    wanted = expand_items(items)
    known: set[str] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        known.update(
            session.scalars(select(DedicatedIp.address).where(DedicatedIp.address.in_(chunk)))
        )
    added = [address for address in wanted if address not in known]
    session.add_all(DedicatedIp(id=new_id("ip"), address=a, status=FREE) for a in added)
    session.flush()
    return AddedAddresses(added=added, already_present=[a for a in wanted if a in known])


def sync_pool(session: Session, *, ip_pool: str) -> AddedAddresses:
    """Make every address of ``settings.ip_pool`` part of the inventory (idempotent)."""
    return add_addresses(session, items=[ip_pool]) if ip_pool.strip() else AddedAddresses([], [])


def _available(now: datetime) -> ColumnElement[bool]:
    """Free, or cooled down long enough to be free again."""
    return or_(
        DedicatedIp.status == FREE,
        and_(DedicatedIp.status == COOLDOWN, DedicatedIp.cooldown_until <= now),
    )


def available_count(session: Session) -> int:
    """How many addresses an order could reserve right now."""
    count = session.scalar(
        select(func.count()).select_from(DedicatedIp).where(_available(utcnow()))
    )
    return count or 0


def reserve_ips(
    session: Session, *, workspace_id: str, order_id: str, count: int
) -> list[DedicatedIp]:
    """Reserve ``count`` free addresses for an order, all or none (503 when short)."""
    now = utcnow()
    stmt = (
        select(DedicatedIp)
        .where(_available(now))
        .order_by(DedicatedIp.address)
        .limit(count)
        .with_for_update(skip_locked=True)
    )
    chosen = list(session.scalars(stmt))
    if len(chosen) < count:
        raise InventoryUnavailable(
            f"not enough free dedicated IPs: asked for {count}, {len(chosen)} available"
        )
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
