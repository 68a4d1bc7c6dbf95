"""The order queue's side of provisioning: claim, plan, complete, fail — each one transaction.

A worker claims an order with a lease (``claimed_until``); a worker that dies loses its lease
and another claims the order again. Completion re-checks the claim and applies everything at
once, so an order is either untouched or done; every step is idempotent, so a retried order
completes correctly. The slow parts (keys, password hashes, the registrar) happen between the
transactions, in the worker, without holding a database lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from adbtd.clock import utcnow
from adbtd.db.models import Domain, Mailbox, Order
from adbtd.services import billing, domains, inventory, mailboxes, node_sync, workspaces
from adbtd.services.mailboxes import ip_loads, spread
from adbtd.services.node_state import DKIM_KEY_PURPOSE
from adbtd.services.orders import COMPLETED, FAILED, PENDING
from adbtd.services.secretbox import SecretBox

GAVE_UP = "provisioning failed repeatedly; nothing was kept. Place the order again."


class OrderFailed(Exception):
    """A permanent reason an order cannot complete; the message is shown to the customer."""


@dataclass(frozen=True, slots=True)
class OrderPlan:
    """What a claimed order still needs that takes time to make."""

    order_id: str
    workspace_id: str
    attempts: int
    keyless_domains: list[str] = field(default_factory=list)
    to_register: dict[str, str] = field(default_factory=dict)  # domain id → name
    passwordless_mailboxes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Provisioned:
    """The slow-made material the worker hands to ``complete_order``."""

    dkim_keys: dict[str, str] = field(default_factory=dict)  # domain id → PEM
    passwords: dict[str, tuple[str, str]] = field(default_factory=dict)  # mb id → (plain, hash)
    registered: set[str] = field(default_factory=set)  # domain ids


def claim_next_order(session: Session, *, worker_id: str, lease_seconds: float) -> str | None:
    """Atomically take the oldest unclaimed (or lease-expired) pending order, or None."""
    now = utcnow()
    candidate = (
        select(Order.id)
        .where(
            Order.status == PENDING,
            or_(Order.claimed_until.is_(None), Order.claimed_until < now),
        )
        .order_by(Order.created_at, Order.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(Order)
        .where(Order.id == candidate, Order.status == PENDING)
        .values(
            claimed_by=worker_id,
            claimed_until=now + timedelta(seconds=lease_seconds),
            attempts=Order.attempts + 1,
            updated_at=now,
        )
        .returning(Order.id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).scalar_one_or_none()


def release_dead_claims(session: Session, *, host: str, alive: Callable[[int], bool]) -> list[str]:
    """Free the claims of workers of this host whose process is gone (a killed ``serve`` or
    ``adbtd worker``), so a restart resumes their orders at once instead of after the lease.
    Worker ids are ``host:pid:random``; a claim whose pid is alive (or reused) keeps its lease."""
    claimed = session.execute(
        select(Order.id, Order.claimed_by)
        .where(Order.status == PENDING, Order.claimed_by.like(f"{host}:%"))
        .with_for_update(skip_locked=True)
    ).all()
    dead = []
    for order_id, worker in claimed:
        _host, _sep, rest = str(worker).partition(":")
        pid = rest.partition(":")[0]
        if pid.isdigit() and not alive(int(pid)):
            dead.append(order_id)
    if dead:
        session.execute(
            update(Order)
            .where(Order.id.in_(dead), Order.status == PENDING)
            .values(claimed_until=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return dead


def extend_claim(session: Session, *, order_id: str, worker_id: str, lease_seconds: float) -> bool:
    """Push a held claim's lease forward (slow work such as a registrar call); False if lost."""
    kept = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == PENDING, Order.claimed_by == worker_id)
        .values(claimed_until=utcnow() + timedelta(seconds=lease_seconds))
        .returning(Order.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return kept is not None


def _owned(session: Session, *, order_id: str, worker_id: str) -> Order | None:
    """The order, locked, if it is still pending and still ours."""
    stmt = (
        select(Order)
        .where(Order.id == order_id, Order.status == PENDING, Order.claimed_by == worker_id)
        .with_for_update()
    )
    return session.scalar(stmt)


def plan_order(session: Session, *, order_id: str, worker_id: str) -> OrderPlan | None:
    """Read what a claimed order still lacks; None when the claim was lost."""
    order = _owned(session, order_id=order_id, worker_id=worker_id)
    if order is None:
        return None
    pending_domains = session.scalars(
        select(Domain).where(Domain.order_id == order.id, Domain.status == domains.PENDING)
    ).all()
    passwordless = session.scalars(
        select(Mailbox.id).where(
            Mailbox.order_id == order.id,
            Mailbox.status == mailboxes.PENDING,
            Mailbox.password_hash.is_(None),
        )
    ).all()
    return OrderPlan(
        order_id=order.id,
        workspace_id=order.workspace_id,
        attempts=order.attempts,
        keyless_domains=[d.id for d in pending_domains if d.dkim_private_key_encrypted is None],
        to_register={d.id: d.name for d in pending_domains if d.mode == "buy" and not d.managed},
        passwordless_mailboxes=list(passwordless),
    )


def complete_order(
    session: Session, *, order_id: str, worker_id: str, made: Provisioned, secret_key: str
) -> bool:
    """Apply everything at once and mark the order completed; False when the claim was lost."""
    order = _owned(session, order_id=order_id, worker_id=worker_id)
    if order is None:
        return False
    workspaces.lock_workspace(session, order.workspace_id)  # before its domains, IPs, mailboxes
    _finish_domains(session, order=order, made=made, secret_key=secret_key)
    inventory.assign_reserved(session, order_id=order.id)
    _finish_mailboxes(session, order=order, made=made, secret_key=secret_key)
    session.flush()
    billing.sync_quantities(session, order.workspace_id)
    node_sync.mark_node_changed(session)
    _close(order, status=COMPLETED, error=None)
    return True


def _finish_domains(session: Session, *, order: Order, made: Provisioned, secret_key: str) -> None:
    box = SecretBox(secret_key, DKIM_KEY_PURPOSE)
    for dom in session.scalars(
        select(Domain).where(Domain.order_id == order.id, Domain.status == domains.PENDING)
    ):
        if dom.dkim_private_key_encrypted is None:
            if dom.id not in made.dkim_keys:
                raise RuntimeError(f"no DKIM key was made for {dom.id}")
            dom.dkim_private_key_encrypted = box.seal(made.dkim_keys[dom.id])
        if dom.mode == "buy" and not dom.managed:
            if dom.id not in made.registered:
                raise RuntimeError(f"{dom.id} was not registered")
            dom.managed = True
        dom.status = domains.UNVERIFIED


def _finish_mailboxes(
    session: Session, *, order: Order, made: Provisioned, secret_key: str
) -> None:
    box = SecretBox(secret_key, mailboxes.PASSWORD_PURPOSE)
    pending = list(
        session.scalars(
            select(Mailbox).where(Mailbox.order_id == order.id, Mailbox.status == mailboxes.PENDING)
        )
    )
    if not pending:
        return
    held = [ip.id for ip in inventory.workspace_ips(session, workspace_id=order.workspace_id)]
    strays = [mb for mb in pending if mb.ip_id not in held]
    if strays and not held:
        raise OrderFailed("the workspace has no dedicated IP left for these mailboxes")
    for mailbox, ip_id in zip(
        strays, spread(ip_loads(session, ip_ids=held), len(strays)), strict=True
    ):
        mailbox.ip_id = ip_id
    for mailbox in pending:
        if mailbox.password_hash is None:
            if mailbox.id not in made.passwords:
                raise RuntimeError(f"no password was made for {mailbox.id}")
            plain, hashed = made.passwords[mailbox.id]
            mailbox.password_hash = hashed
            mailbox.password_encrypted = box.seal(plain)
        mailbox.status = mailboxes.ACTIVE


def fail_order(session: Session, *, order_id: str, reason: str) -> bool:
    """Mark a pending order failed and release everything it reserved; False if not pending."""
    order = session.scalar(
        select(Order).where(Order.id == order_id, Order.status == PENDING).with_for_update()
    )
    if order is None:
        return False
    workspaces.lock_workspace(session, order.workspace_id)
    session.execute(
        delete(Mailbox)
        .where(Mailbox.order_id == order.id, Mailbox.status == mailboxes.PENDING)
        .execution_options(synchronize_session=False)
    )
    pending_domains = select(Domain.id).where(
        Domain.order_id == order.id, Domain.status == domains.PENDING
    )
    session.execute(
        delete(Mailbox)
        .where(Mailbox.domain_id.in_(pending_domains))
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(Domain)
        .where(Domain.order_id == order.id, Domain.status == domains.PENDING)
        .execution_options(synchronize_session=False)
    )
    inventory.unreserve(session, order_id=order.id)
    session.flush()
    billing.sync_quantities(session, order.workspace_id)
    _close(order, status=FAILED, error=reason)
    return True


def retry_later(
    session: Session, *, order_id: str, worker_id: str, base_delay_seconds: float, max_attempts: int
) -> bool:
    """After an unexpected error: give the order back for a later attempt, or fail it.

    The wait doubles with each attempt. Returns True when the order was failed for good.
    """
    order = _owned(session, order_id=order_id, worker_id=worker_id)
    if order is None:
        return False
    if order.attempts >= max_attempts:
        return fail_order(session, order_id=order_id, reason=GAVE_UP)
    delay = base_delay_seconds * 2 ** max(order.attempts - 1, 0)
    order.claimed_by = None
    order.claimed_until = utcnow() + timedelta(seconds=delay)
    order.updated_at = utcnow()
    return False


def _close(order: Order, *, status: str, error: str | None) -> None:
    now = utcnow()
    order.status = status
    order.error = error
    order.claimed_by = None
    order.claimed_until = None
    order.updated_at = now
    order.completed_at = now
