"""Billing flows that involve the provider: checkout, pushing quantities, webhook events.

``services.billing`` keeps the local record (payment method on file, quantities); this module
carries it to the provider. Provider calls happen between short transactions, never inside
one, and every write to the provider carries an idempotency key derived from local state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select

from adbtd.adapters.billing import (
    BillingEvent,
    BillingProvider,
    PushResult,
    QuantityChange,
)
from adbtd.clock import iso_ms, utcnow
from adbtd.db.engine import Database
from adbtd.db.models import BillingAccount, SubscriptionItem, Workspace
from adbtd.errors import NotFound, ValidationFailed
from adbtd.services import billing
from adbtd.settings import Settings, parse_price_table


@dataclass(frozen=True, slots=True)
class EstimateLine:
    kind: str
    quantity: int
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the workspace pays per month at its current quantities."""

    currency: str
    lines: list[EstimateLine]
    total: Decimal


def monthly_estimate(settings: Settings, *, currency: str, quantities: dict[str, int]) -> Estimate:
    """Price each billable kind from ``ADBTD_BILLING_PRICES`` (a missing price counts as 0)."""
    prices = parse_price_table(settings.billing_prices).get(currency.lower(), {})
    lines = []
    for kind in billing.BILLABLE_KINDS:
        try:
            unit = Decimal(prices.get(kind, "0"))
        except InvalidOperation:
            unit = Decimal(0)
        quantity = quantities.get(kind, 0)
        lines.append(EstimateLine(kind, quantity, unit, unit * quantity))
    return Estimate(currency.lower(), lines, sum((line.amount for line in lines), Decimal(0)))


def price_refs(settings: Settings, provider: BillingProvider, currency: str) -> dict[str, str]:
    """The provider's price id for each kind in this currency (made up for the local one)."""
    if provider.name != "stripe":
        return {kind: f"price_local_{kind}" for kind in billing.BILLABLE_KINDS}
    refs = parse_price_table(settings.stripe_prices).get(currency.lower(), {})
    missing = [kind for kind in billing.BILLABLE_KINDS if kind not in refs]
    if missing:
        raise ValidationFailed(
            f"ADBTD_STRIPE_PRICES has no {currency} price for {', '.join(missing)}"
        )
    return {kind: refs[kind] for kind in billing.BILLABLE_KINDS}


def ensure_customer(db: Database, provider: BillingProvider, *, workspace_id: str) -> str:
    """The provider's customer for the workspace, created once (keyed by the workspace id)."""
    with db.transaction() as session:
        account = billing.account_for(session, workspace_id)
        workspace = session.get(Workspace, workspace_id)
        if workspace is None:
            raise NotFound("workspace not found")
        if account.customer_ref and account.provider == provider.name:
            return account.customer_ref
        name = workspace.name
    ref = provider.ensure_customer(
        workspace_id=workspace_id,
        name=name,
        customer_ref=None,
        idempotency_key=f"adbtd:customer:{workspace_id}",
    )
    with db.transaction() as session:
        account = billing.account_for(session, workspace_id)
        account.customer_ref = ref
        account.provider = provider.name
    return ref


def start_checkout(
    db: Database, provider: BillingProvider, *, workspace_id: str, base_url: str
) -> str:
    """Create a hosted checkout for the workspace and return the URL to redirect to."""
    customer_ref = ensure_customer(db, provider, workspace_id=workspace_id)
    with db.transaction() as session:
        workspace = session.get(Workspace, workspace_id)
        currency = workspace.currency if workspace else "usd"
    root = base_url.rstrip("/") + "/dashboard/billing"
    return provider.create_checkout(
        workspace_id=workspace_id,
        customer_ref=customer_ref,
        currency=currency,
        success_url=f"{root}/checkout/done?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{root}?checkout=cancelled",
    )


def complete_checkout(
    db: Database,
    provider: BillingProvider,
    settings: Settings,
    *,
    checkout_ref: str,
    member_of: set[str] | None = None,
) -> str:
    """Record the payment method of a finished checkout, then push quantities; idempotent.

    ``member_of`` limits which workspaces the caller may complete a checkout for (the
    dashboard passes the viewer's); a checkout of any other workspace is not found.
    """
    finished = provider.finish_checkout(checkout_ref=checkout_ref)
    if member_of is not None and finished.workspace_id not in member_of:
        raise NotFound("no such checkout")
    with db.transaction() as session:
        account = billing.account_for(session, finished.workspace_id)
        if account.customer_ref not in (None, finished.customer_ref):
            raise ValidationFailed("the checkout belongs to another customer")
        account.customer_ref = finished.customer_ref
        account.provider = provider.name
        account.delinquent = False
        account.payment_state_at = utcnow()
        if account.payment_method_ref != finished.payment_method_ref:
            billing.record_payment_method(
                session, workspace_id=finished.workspace_id, ref=finished.payment_method_ref
            )
    push_quantities(db, provider, settings, workspace_id=finished.workspace_id)
    return finished.workspace_id


def quantity_key(workspace_id: str, item: SubscriptionItem) -> str:
    """Same local change → same key: a retried push replays instead of charging again."""
    stamp = iso_ms(item.updated_at)
    return f"adbtd:qty:{workspace_id}:{item.kind}:{item.item_ref or 'new'}:{item.quantity}:{stamp}"


def push_quantities(
    db: Database, provider: BillingProvider, settings: Settings, *, workspace_id: str
) -> PushResult | None:
    """Make the provider's subscription match the recorded quantities.

    Call it after the transaction that changed domains, IPs or mailboxes has committed (the
    order worker does); nothing is pushed before a payment method is on file.
    """
    with db.transaction() as session:
        account = billing.account_for(session, workspace_id)
        if account.payment_method_ref is None:
            return None
        billing.sync_quantities(session, workspace_id)
        session.flush()
        workspace = session.get(Workspace, workspace_id)
        prices = price_refs(settings, provider, workspace.currency if workspace else "usd")
        items = list(
            session.scalars(
                select(SubscriptionItem).where(SubscriptionItem.workspace_id == workspace_id)
            )
        )
        changes = [
            QuantityChange(
                kind=item.kind,
                quantity=item.quantity,
                price_ref=prices[item.kind],
                item_ref=item.item_ref,
                idempotency_key=quantity_key(workspace_id, item),
            )
            for item in sorted(items, key=lambda i: billing.BILLABLE_KINDS.index(i.kind))
            if item.kind in prices
        ]
        subscription_ref = account.subscription_ref
        customer_ref = account.customer_ref if account.provider == provider.name else None
    if customer_ref is None:
        customer_ref = ensure_customer(db, provider, workspace_id=workspace_id)
    result = provider.push_quantities(
        customer_ref=customer_ref,
        subscription_ref=subscription_ref,
        workspace_id=workspace_id,
        changes=changes,
        create_key=f"adbtd:subscription:{workspace_id}:{customer_ref}",
    )
    with db.transaction() as session:
        account = billing.account_for(session, workspace_id)
        account.subscription_ref = result.subscription_ref
        for item in session.scalars(
            select(SubscriptionItem).where(SubscriptionItem.workspace_id == workspace_id)
        ):
            if item.kind in result.item_refs:
                item.item_ref = result.item_refs[item.kind]
    return result


def is_stale(state_at: datetime | None, created_at: datetime | None) -> bool:
    """An event made before the payment state it would replace was set (Stripe sends
    ``invoice.paid`` and ``invoice.payment_failed`` in no guaranteed order). Its time has
    whole seconds, so an event of the same second as the state still applies."""
    if state_at is None or created_at is None:
        return False
    return created_at < state_at.replace(microsecond=0)


def handle_event(
    db: Database, provider: BillingProvider, settings: Settings, event: BillingEvent
) -> str:
    """Act on a verified webhook; returns what was done (for logs and tests)."""
    if event.kind == "checkout_completed" and event.checkout_ref:
        workspace_id = complete_checkout(db, provider, settings, checkout_ref=event.checkout_ref)
        return f"payment method recorded for {workspace_id}"
    if event.kind in ("payment_failed", "payment_succeeded") and event.customer_ref:
        with db.transaction() as session:
            account = session.scalar(
                select(BillingAccount).where(BillingAccount.customer_ref == event.customer_ref)
            )
            if account is None:
                return "no workspace for this customer"
            if is_stale(account.payment_state_at, event.created_at):
                return f"{account.workspace_id} older than its payment state; ignored"
            account.delinquent = event.kind == "payment_failed"
            account.payment_state_at = event.created_at or utcnow()
            return f"{account.workspace_id} delinquent={account.delinquent}"
    if event.kind == "subscription_ended" and event.customer_ref:
        with db.transaction() as session:
            account = session.scalar(
                select(BillingAccount).where(BillingAccount.customer_ref == event.customer_ref)
            )
            if account is None:
                return "no workspace for this customer"
            # The next push starts a new subscription; a fresh ``updated_at`` gives its
            # requests new idempotency keys, so Stripe cannot replay the ended one.
            account.subscription_ref = None
            now = utcnow()
            for item in session.scalars(
                select(SubscriptionItem).where(
                    SubscriptionItem.workspace_id == account.workspace_id
                )
            ):
                item.item_ref = None
                item.updated_at = now
            return f"{account.workspace_id} subscription ended"
    return "ignored"
