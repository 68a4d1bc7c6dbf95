"""Stripe through the official SDK: a customer per workspace, Checkout in setup mode for the
payment method, one subscription with an item per billable kind, signed webhooks.

Every POST carries an idempotency key the caller derived from local state, so a worker that
dies after Stripe answered but before the database committed replays the same request on
retry and Stripe returns the first answer instead of charging twice.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import stripe

from adbtd.adapters.billing import (
    BillingEvent,
    EventKind,
    FinishedCheckout,
    PushResult,
    QuantityChange,
)
from adbtd.errors import BillingUnavailable, WebhookRejected

WEBHOOK_TOLERANCE_SECONDS = 300
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
EVENT_KINDS: dict[str, EventKind] = {
    "checkout.session.completed": "checkout_completed",
    "invoice.payment_failed": "payment_failed",
    "payment_intent.payment_failed": "payment_failed",
    "invoice.paid": "payment_succeeded",
    "invoice.payment_succeeded": "payment_succeeded",
    "customer.subscription.deleted": "subscription_ended",
}


class StripeBilling:
    """The Stripe adapter; ``api_base`` points the SDK elsewhere (localstripe in tests)."""

    name = "stripe"
    hosted_checkout = True

    def __init__(self, *, api_key: str, webhook_secret: str, api_base: str | None = None) -> None:
        self._webhook_secret = webhook_secret
        bases: Any = {"api": api_base.rstrip("/")} if api_base else None
        self._client = stripe.StripeClient(api_key, base_addresses=bases, max_network_retries=2)

    def ensure_customer(
        self, *, workspace_id: str, name: str, customer_ref: str | None, idempotency_key: str
    ) -> str:
        if customer_ref:
            return customer_ref
        with _translated("creating the customer"):
            customer = self._client.v1.customers.create(
                params={"name": name, "metadata": {"workspace_id": workspace_id}},
                options={"idempotency_key": idempotency_key},
            )
        return str(customer.id)

    def create_checkout(
        self,
        *,
        workspace_id: str,
        customer_ref: str,
        currency: str,
        success_url: str,
        cancel_url: str,
    ) -> str:
        with _translated("starting checkout"):
            checkout = self._client.v1.checkout.sessions.create(
                params={
                    "mode": "setup",
                    "customer": customer_ref,
                    "currency": currency,
                    "client_reference_id": workspace_id,
                    "metadata": {"workspace_id": workspace_id},
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                }
            )
        if not checkout.url:
            raise BillingUnavailable("Stripe returned a checkout session without a URL")
        return str(checkout.url)

    def finish_checkout(self, *, checkout_ref: str) -> FinishedCheckout:
        with _translated("reading the checkout session"):
            checkout = self._client.v1.checkout.sessions.retrieve(checkout_ref)
            intent_ref = _ref(checkout.setup_intent)
            if checkout.status != "complete" or intent_ref is None:
                raise BillingUnavailable("the checkout session is not complete yet")
            intent = self._client.v1.setup_intents.retrieve(intent_ref)
            method_ref = _ref(intent.payment_method)
            customer_ref = _ref(checkout.customer)
            if method_ref is None or customer_ref is None:
                raise BillingUnavailable("the checkout session holds no payment method")
            self._client.v1.customers.update(
                customer_ref,
                params={"invoice_settings": {"default_payment_method": method_ref}},
                options={"idempotency_key": f"adbtd:default-pm:{customer_ref}:{method_ref}"},
            )
        workspace_id = _meta(checkout.metadata, "workspace_id") or checkout.client_reference_id
        if not workspace_id:
            raise BillingUnavailable("the checkout session names no workspace")
        return FinishedCheckout(str(workspace_id), customer_ref, method_ref)

    def push_quantities(
        self,
        *,
        customer_ref: str,
        subscription_ref: str | None,
        workspace_id: str,
        changes: list[QuantityChange],
        create_key: str,
    ) -> PushResult:
        with _translated("updating the subscription"):
            live: dict[str, tuple[str, int]] = {}  # price → (item, quantity) already at Stripe
            if subscription_ref is None:
                # A push that died after Stripe answered left a subscription we never recorded;
                # adopt it rather than trust the idempotency key (a later change alters it).
                subscription_ref, live = self._live_subscription(customer_ref, workspace_id)
            items: dict[str, str] = {}
            if subscription_ref is None:
                first = next((c for c in changes if c.quantity > 0 and c.item_ref is None), None)
                if first is None:
                    return PushResult(None, {})
                subscription = self._client.v1.subscriptions.create(
                    params={
                        "customer": customer_ref,
                        "items": [{"price": first.price_ref, "quantity": first.quantity}],
                        "metadata": {"workspace_id": workspace_id},
                    },
                    options={"idempotency_key": f"{create_key}:{first.idempotency_key}"},
                )
                subscription_ref = str(subscription.id)
                items[first.kind] = str(subscription["items"]["data"][0]["id"])
            for change in changes:
                if change.kind not in items:
                    items.update(self._push_item(subscription_ref, change, live))
        return PushResult(subscription_ref, items)

    def _push_item(
        self, subscription_ref: str, change: QuantityChange, live: dict[str, tuple[str, int]]
    ) -> dict[str, str]:
        """Bring one kind's item to its quantity; the item it ends on, if any."""
        item_ref, quantity = change.item_ref, None
        if item_ref is None and change.price_ref in live:
            item_ref, quantity = live[change.price_ref]
        if item_ref is not None:
            if quantity != change.quantity:
                self._client.v1.subscription_items.update(
                    item_ref,
                    params={"quantity": change.quantity},
                    options={"idempotency_key": change.idempotency_key},
                )
            return {change.kind: item_ref}
        if change.quantity <= 0:
            return {}
        item = self._client.v1.subscription_items.create(
            params={
                "subscription": subscription_ref,
                "price": change.price_ref,
                "quantity": change.quantity,
            },
            options={"idempotency_key": change.idempotency_key},
        )
        return {change.kind: str(item.id)}

    def _live_subscription(
        self, customer_ref: str, workspace_id: str
    ) -> tuple[str | None, dict[str, tuple[str, int]]]:
        """The customer's running subscription for this workspace, with its items by price."""
        listing = self._client.v1.subscriptions.list(params={"customer": customer_ref})
        for subscription in listing.data:
            if subscription.status in ENDED_STATUSES:
                continue
            if _meta(subscription.metadata, "workspace_id") != workspace_id:
                continue
            live: dict[str, tuple[str, int]] = {}
            for item in subscription["items"]["data"]:
                price = _ref(getattr(item, "price", None)) or _ref(getattr(item, "plan", None))
                if price is not None:
                    live[price] = (str(item.id), int(getattr(item, "quantity", 0) or 0))
            return str(subscription.id), live
        return None, {}

    def parse_event(self, *, payload: bytes, signature: str | None) -> BillingEvent:
        if not signature:
            raise WebhookRejected("missing Stripe-Signature header")
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"),
                signature,
                self._webhook_secret,
                WEBHOOK_TOLERANCE_SECONDS,
            )
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
            raise WebhookRejected("webhook signature or body is invalid") from exc
        return event_from_payload(event)


def event_from_payload(event: Any) -> BillingEvent:
    """Reduce a decoded (already verified) event to what the platform acts on."""
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        raise WebhookRejected("webhook body is not a Stripe event")
    obj = event["data"].get("object")
    obj = obj if isinstance(obj, dict) else {}
    kind = EVENT_KINDS.get(str(event.get("type")), "ignored")
    metadata = obj.get("metadata")
    workspace_id = (metadata.get("workspace_id") if isinstance(metadata, dict) else None) or (
        obj.get("client_reference_id")
    )
    return BillingEvent(
        kind=kind,
        event_id=str(event.get("id", "")),
        workspace_id=str(workspace_id) if workspace_id else None,
        customer_ref=_ref(obj.get("customer")),
        checkout_ref=str(obj["id"]) if kind == "checkout_completed" and obj.get("id") else None,
        created_at=_timestamp(event.get("created")),
    )


def _timestamp(value: Any) -> datetime | None:
    """Stripe's ``created`` (Unix seconds) as an aware datetime; None when absent or odd."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _meta(metadata: Any, key: str) -> str | None:
    try:
        value = metadata[key] if metadata is not None else None
    except (KeyError, TypeError):
        return None
    return str(value) if value else None


def _ref(value: Any) -> str | None:
    """An id whether Stripe sent it bare or expanded."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    ident = getattr(value, "id", None)
    return ident if isinstance(ident, str) and ident else None


class _translated:
    """Turn any Stripe SDK failure into ``BillingUnavailable``, keeping the cause."""

    def __init__(self, action: str) -> None:
        self.action = action

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        if isinstance(exc, stripe.StripeError):
            message = exc.user_message or str(exc) or type(exc).__name__
            raise BillingUnavailable(f"Stripe failed while {self.action}: {message}") from exc
