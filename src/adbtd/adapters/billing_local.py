"""The local billing provider: the embedded default, which charges nobody.

Its checkout is the dashboard's own page that records a test payment method; quantities live
only in the database (``subscription_items``).
"""

from __future__ import annotations

from adbtd.adapters.billing import (
    BillingEvent,
    FinishedCheckout,
    PushResult,
    QuantityChange,
)
from adbtd.errors import WebhookRejected


class LocalBilling:
    """Refs are made up from the workspace id, so every call is naturally idempotent."""

    name = "local"
    hosted_checkout = False

    def ensure_customer(
        self, *, workspace_id: str, name: str, customer_ref: str | None, idempotency_key: str
    ) -> str:
        return customer_ref or f"cus_local_{workspace_id}"

    def create_checkout(
        self,
        *,
        workspace_id: str,
        customer_ref: str,
        currency: str,
        success_url: str,
        cancel_url: str,
    ) -> str:
        raise WebhookRejected("the local provider has no hosted checkout")

    def finish_checkout(self, *, checkout_ref: str) -> FinishedCheckout:
        raise WebhookRejected("the local provider has no hosted checkout")

    def push_quantities(
        self,
        *,
        customer_ref: str,
        subscription_ref: str | None,
        workspace_id: str,
        changes: list[QuantityChange],
        create_key: str,
    ) -> PushResult:
        items = {c.kind: c.item_ref or f"si_local_{workspace_id}_{c.kind}" for c in changes}
        return PushResult(subscription_ref or f"sub_local_{workspace_id}", items)

    def parse_event(self, *, payload: bytes, signature: str | None) -> BillingEvent:
        raise WebhookRejected("the local provider takes no webhooks")
