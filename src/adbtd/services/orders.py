"""Placing orders: the order row and every reservation it needs, written in one transaction.

Each ``place_*`` function checks in the contract's order — input (400), payment method (402),
state (409), inventory (503) — and returns the order as ``pending_provision``; the worker
(``adbtd.workers.orders`` over ``adbtd.services.provisioning``) finishes it. The caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from adbtd.clock import utcnow
from adbtd.db.models import Domain, Order
from adbtd.errors import Conflict, NotFound, ValidationFailed
from adbtd.ids import check_id, new_id
from adbtd.services import billing, domains, inventory, ips, mailboxes, workspaces
from adbtd.services.names import email_domain, normalize_domain_name, normalize_emails
from adbtd.settings import Settings

PENDING = "pending_provision"
COMPLETED = "completed"
FAILED = "failed"
KINDS = ("first_order", "domain", "ips", "mailboxes")
MODES = ("byo", "buy")
MIN_IPS, MAX_IPS = 1, 10
MAX_MAILBOXES = 100
DEFAULT_LIST_LIMIT = 100


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """What a create call answers: the order id, its status and what was ordered."""

    order_id: str
    status: str
    domain: str | None = None
    mode: str | None = None
    ips: int = 0
    emails: list[str] = field(default_factory=list)


def place_first_order(
    session: Session,
    *,
    workspace_id: str,
    domain: str,
    ip_count: int,
    emails: list[str],
    settings: Settings,
    mode: str = "byo",
) -> PlacedOrder:
    """A workspace's first order: one domain, its IPs and its mailboxes, provisioned together."""
    name = normalize_domain_name(domain)
    _check_mode(mode)
    _check_ip_count(ip_count)
    addresses = _check_emails(emails, minimum=0)
    strangers = [email for email in addresses if email_domain(email) != name]
    if strangers:
        raise ValidationFailed(f"{strangers[0]} is not on {name}; first-order mailboxes must be")
    workspaces.lock_workspace(session, workspace_id)
    billing.require_payment_method(session, workspace_id=workspace_id, base_url=settings.base_url)
    if domains.workspace_has_domain(session, workspace_id=workspace_id) or ips.workspace_has_ip(
        session, workspace_id=workspace_id
    ):
        raise Conflict(
            "the workspace already has a domain or dedicated IP; "
            "add more with POST /domains, /ips or /mailboxes"
        )
    _check_domain_free(session, name)
    _check_emails_free(session, addresses)
    order = _new_order(
        session,
        workspace_id=workspace_id,
        kind="first_order",
        payload=_payload(domain=name, mode=mode, ips=ip_count, emails=addresses),
    )
    reserved = inventory.reserve_ips(
        session, workspace_id=workspace_id, order_id=order.id, count=ip_count
    )
    dom = _add_domain(
        session,
        workspace_id=workspace_id,
        order_id=order.id,
        name=name,
        mode=mode,
        selector=settings.dkim_selector,
    )
    _flush_or_conflict(session)
    mailboxes.add_pending_mailboxes(
        session,
        workspace_id=workspace_id,
        order_id=order.id,
        emails=addresses,
        domain_ids={name: dom.id},
        ip_ids=[ip.id for ip in reserved],
    )
    _flush_or_conflict(session)
    return PlacedOrder(order.id, PENDING, domain=name, mode=mode, ips=ip_count, emails=addresses)


def place_domain_order(
    session: Session, *, workspace_id: str, name: str, mode: str, settings: Settings
) -> PlacedOrder:
    """Add a domain (POST /domains): needs a dedicated IP; the name must be new platform-wide."""
    normalized = normalize_domain_name(name)
    _check_mode(mode)
    workspaces.lock_workspace(session, workspace_id)
    billing.require_payment_method(session, workspace_id=workspace_id, base_url=settings.base_url)
    if not ips.workspace_has_ip(session, workspace_id=workspace_id):
        raise Conflict(
            "the workspace has no dedicated IP yet; place the first order in the dashboard"
        )
    _check_domain_free(session, normalized)
    order = _new_order(
        session,
        workspace_id=workspace_id,
        kind="domain",
        payload=_payload(domain=normalized, mode=mode),
    )
    _add_domain(
        session,
        workspace_id=workspace_id,
        order_id=order.id,
        name=normalized,
        mode=mode,
        selector=settings.dkim_selector,
    )
    _flush_or_conflict(session)
    return PlacedOrder(order.id, PENDING, domain=normalized, mode=mode)


def place_ip_order(
    session: Session, *, workspace_id: str, count: int, settings: Settings
) -> PlacedOrder:
    """Order more dedicated IPs (POST /ips): needs a domain; 503 when the inventory is short."""
    _check_ip_count(count)
    workspaces.lock_workspace(session, workspace_id)
    billing.require_payment_method(session, workspace_id=workspace_id, base_url=settings.base_url)
    if not domains.workspace_has_domain(session, workspace_id=workspace_id):
        raise Conflict("the workspace has no domain; add one before ordering IPs")
    order = _new_order(session, workspace_id=workspace_id, kind="ips", payload=_payload(ips=count))
    inventory.reserve_ips(session, workspace_id=workspace_id, order_id=order.id, count=count)
    _flush_or_conflict(session)
    return PlacedOrder(order.id, PENDING, ips=count)


def place_mailbox_order(
    session: Session, *, workspace_id: str, emails: list[str], settings: Settings
) -> PlacedOrder:
    """Create mailboxes (POST /mailboxes) on domains of this workspace."""
    addresses = _check_emails(emails, minimum=1)
    workspaces.lock_workspace(session, workspace_id)
    billing.require_payment_method(session, workspace_id=workspace_id, base_url=settings.base_url)
    wanted = sorted({email_domain(email) for email in addresses})
    rows = session.execute(
        select(Domain.name, Domain.id).where(
            Domain.workspace_id == workspace_id, Domain.name.in_(wanted)
        )
    )
    owned = {name: domain_id for name, domain_id in rows}
    missing = [name for name in wanted if name not in owned]
    if missing:
        raise Conflict(f"domain {missing[0]} is not on this workspace; add it with POST /domains")
    held = inventory.workspace_ips(session, workspace_id=workspace_id)
    if not held:
        raise Conflict("the workspace has no dedicated IP; order one with POST /ips")
    _check_emails_free(session, addresses)
    order = _new_order(
        session, workspace_id=workspace_id, kind="mailboxes", payload=_payload(emails=addresses)
    )
    mailboxes.add_pending_mailboxes(
        session,
        workspace_id=workspace_id,
        order_id=order.id,
        emails=addresses,
        domain_ids=owned,
        ip_ids=[ip.id for ip in held],
    )
    _flush_or_conflict(session)
    return PlacedOrder(order.id, PENDING, emails=addresses)


def list_orders(
    session: Session, *, workspace_id: str, limit: int = DEFAULT_LIST_LIMIT
) -> list[Order]:
    """The workspace's most recent orders, newest first."""
    stmt = (
        select(Order)
        .where(Order.workspace_id == workspace_id)
        .order_by(Order.created_at.desc(), Order.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def get_order(session: Session, *, workspace_id: str, order_id: str) -> Order:
    """One order of this workspace: a malformed id is 400, anything else 404."""
    order = session.get(Order, check_id(order_id, "ord", "order"))
    if order is None or order.workspace_id != workspace_id:
        raise NotFound("order not found")
    return order


def ordered_items(order: Order) -> PlacedOrder:
    """What an order asked for, read back from its payload."""
    payload = order.payload or {}
    return PlacedOrder(
        order_id=order.id,
        status=order.status,
        domain=payload.get("domain"),
        mode=payload.get("mode"),
        ips=int(payload.get("ips", 0)),
        emails=list(payload.get("emails", [])),
    )


def _payload(
    *,
    domain: str | None = None,
    mode: str | None = None,
    ips: int = 0,
    emails: list[str] | None = None,
) -> dict[str, Any]:
    return {"domain": domain, "mode": mode, "ips": ips, "emails": list(emails or [])}


def _new_order(session: Session, *, workspace_id: str, kind: str, payload: dict[str, Any]) -> Order:
    now = utcnow()
    order = Order(
        id=new_id("ord"),
        workspace_id=workspace_id,
        kind=kind,
        status=PENDING,
        payload=payload,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(order)
    session.flush()
    return order


def _add_domain(
    session: Session, *, workspace_id: str, order_id: str, name: str, mode: str, selector: str
) -> Domain:
    dom = Domain(
        id=new_id("dom"),
        workspace_id=workspace_id,
        order_id=order_id,
        name=name,
        mode=mode,
        status=domains.PENDING,
        managed=False,
        dkim_selector=selector,
        created_at=utcnow(),
    )
    session.add(dom)
    return dom


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValidationFailed("mode must be 'byo' or 'buy'")


def _check_ip_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not MIN_IPS <= count <= MAX_IPS:
        raise ValidationFailed(f"count must be an integer from {MIN_IPS} to {MAX_IPS}")


def _check_emails(emails: list[str], *, minimum: int) -> list[str]:
    if not minimum <= len(emails) <= MAX_MAILBOXES:
        raise ValidationFailed(f"give {max(minimum, 1)} to {MAX_MAILBOXES} email addresses")
    return normalize_emails(emails)


def _check_domain_free(session: Session, name: str) -> None:
    if domains.domain_exists(session, name=name):
        raise Conflict(f"domain {name} already exists")


def _check_emails_free(session: Session, emails: list[str]) -> None:
    taken = mailboxes.existing_emails(session, emails=emails)
    if taken:
        raise Conflict(f"mailbox {taken[0]} already exists")


def _flush_or_conflict(session: Session) -> None:
    """A unique name taken by a concurrent request between our check and our insert is a 409."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("the domain or mailbox was just created by another request") from exc
