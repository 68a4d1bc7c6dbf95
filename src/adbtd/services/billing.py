"""Billing rules: who may order (payment method on file) and what quantities they pay for.

The provider port (``adbtd.adapters.billing``) talks to the outside; this module owns the rules
and the local record of quantities, so the API answers 402 without calling anyone.
"""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adbtd.clock import utcnow
from adbtd.db.models import BillingAccount, DedicatedIp, Domain, Mailbox, SubscriptionItem
from adbtd.errors import NotFound, PaymentRequired

BILLABLE_KINDS = ("domain", "ip", "mailbox")
CHECKOUT_PATH = "/dashboard/billing/checkout"


def checkout_url(base_url: str, workspace_id: str) -> str:
    """Where a client sends the user to add a payment method."""
    return f"{base_url.rstrip('/')}{CHECKOUT_PATH}?workspace={workspace_id}"


def account_for(session: Session, workspace_id: str) -> BillingAccount:
    account = session.get(BillingAccount, workspace_id)
    if account is None:
        raise NotFound("billing account not found")
    return account


def require_payment_method(session: Session, *, workspace_id: str, base_url: str) -> None:
    """Raise 402 ``payment_required`` (with ``checkoutUrl``) when nothing usable is on file:
    no method at all, or one whose last payment failed (a new checkout clears that)."""
    account = account_for(session, workspace_id)
    if account.payment_method_ref is None:
        message = "add a payment method before ordering"
    elif account.delinquent:
        message = "the last payment failed; update the payment method before ordering"
    else:
        return
    raise PaymentRequired(message, checkoutUrl=checkout_url(base_url, workspace_id))


def record_payment_method(session: Session, *, workspace_id: str, ref: str | None = None) -> str:
    """Record a payment method; without ``ref`` a local test method is made up."""
    account = account_for(session, workspace_id)
    account.payment_method_ref = ref or f"pm_local_{secrets.token_hex(8)}"
    account.payment_method_added_at = utcnow()
    return account.payment_method_ref


def billable_counts(session: Session, workspace_id: str) -> dict[str, int]:
    """What the workspace holds now: domains, assigned IPs and mailboxes."""
    domains = session.scalar(
        select(func.count()).select_from(Domain).where(Domain.workspace_id == workspace_id)
    )
    ips = session.scalar(
        select(func.count())
        .select_from(DedicatedIp)
        .where(
            DedicatedIp.workspace_id == workspace_id,
            DedicatedIp.status.in_(("reserved", "assigned")),
        )
    )
    mailboxes = session.scalar(
        select(func.count()).select_from(Mailbox).where(Mailbox.workspace_id == workspace_id)
    )
    return {"domain": domains or 0, "ip": ips or 0, "mailbox": mailboxes or 0}


def sync_quantities(session: Session, workspace_id: str) -> dict[str, int]:
    """Make the recorded subscription quantities equal what the workspace holds."""
    counts = billable_counts(session, workspace_id)
    existing = {
        item.kind: item
        for item in session.scalars(
            select(SubscriptionItem).where(SubscriptionItem.workspace_id == workspace_id)
        )
    }
    now = utcnow()
    for kind, quantity in counts.items():
        item = existing.get(kind)
        if item is None:
            session.add(
                SubscriptionItem(
                    workspace_id=workspace_id, kind=kind, quantity=quantity, updated_at=now
                )
            )
        elif item.quantity != quantity:
            item.quantity = quantity
            item.updated_at = now
    return counts


def quantities(session: Session, workspace_id: str) -> dict[str, int]:
    items = session.scalars(
        select(SubscriptionItem).where(SubscriptionItem.workspace_id == workspace_id)
    )
    recorded = {item.kind: item.quantity for item in items}
    return {kind: recorded.get(kind, 0) for kind in BILLABLE_KINDS}
