"""The billing port: how the platform talks to a payment provider.

Two adapters implement it: ``LocalBilling`` (the default; records test payment methods, talks
to nobody) and ``StripeBilling`` (the official SDK). Services decide *what* to change and pass
idempotency keys they derive from local state; adapters only translate to the provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from adbtd.settings import Settings

EventKind = Literal[
    "checkout_completed", "payment_failed", "payment_succeeded", "subscription_ended", "ignored"
]


@dataclass(frozen=True, slots=True)
class QuantityChange:
    """Set one billable kind to ``quantity``; ``item_ref`` is None until the item exists."""

    kind: str
    quantity: int
    price_ref: str
    item_ref: str | None
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class PushResult:
    """The provider's subscription and one item per kind, after a push."""

    subscription_ref: str | None
    item_refs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FinishedCheckout:
    workspace_id: str
    customer_ref: str
    payment_method_ref: str


@dataclass(frozen=True, slots=True)
class BillingEvent:
    """A verified webhook, reduced to what the platform acts on."""

    kind: EventKind
    event_id: str
    workspace_id: str | None = None
    customer_ref: str | None = None
    checkout_ref: str | None = None
    created_at: datetime | None = None  # when the provider made the event (not when it came)


class BillingProvider(Protocol):
    """What a payment provider must do for the platform."""

    name: str
    hosted_checkout: bool

    def ensure_customer(
        self, *, workspace_id: str, name: str, customer_ref: str | None, idempotency_key: str
    ) -> str:
        """The provider's customer for this workspace, created on first use."""
        ...

    def create_checkout(
        self,
        *,
        workspace_id: str,
        customer_ref: str,
        currency: str,
        success_url: str,
        cancel_url: str,
    ) -> str:
        """Start collecting a payment method; returns the URL to send the browser to."""
        ...

    def finish_checkout(self, *, checkout_ref: str) -> FinishedCheckout:
        """Read a completed checkout and make its payment method the customer's default."""
        ...

    def push_quantities(
        self,
        *,
        customer_ref: str,
        subscription_ref: str | None,
        workspace_id: str,
        changes: list[QuantityChange],
        create_key: str,
    ) -> PushResult:
        """Bring the provider's subscription to these quantities (creating it when needed)."""
        ...

    def parse_event(self, *, payload: bytes, signature: str | None) -> BillingEvent:
        """Verify a webhook's signature and decode it."""
        ...


def make_billing_provider(settings: Settings) -> BillingProvider:
    """The adapter ``ADBTD_BILLING_PROVIDER`` names."""
    if settings.billing_provider == "stripe":
        from adbtd.adapters.billing_stripe import StripeBilling

        return StripeBilling(
            api_key=settings.stripe_api_key,
            webhook_secret=settings.stripe_webhook_secret,
            api_base=settings.stripe_api_base or None,
        )
    from adbtd.adapters.billing_local import LocalBilling

    return LocalBilling()
