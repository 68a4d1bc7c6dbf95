"""Stripe events reduced to what the platform acts on, and which payment events are stale."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adbtd.adapters.billing_stripe import event_from_payload
from adbtd.errors import WebhookRejected
from adbtd.services.billing_flows import is_stale


def test_an_invoice_event_keeps_its_kind_customer_and_creation_time() -> None:
    event = event_from_payload(
        {
            "id": "evt_1",
            "type": "invoice.payment_failed",
            "created": 1_700_000_000,
            "data": {"object": {"id": "in_1", "customer": "cus_1"}},
        }
    )
    assert (event.kind, event.event_id, event.customer_ref) == ("payment_failed", "evt_1", "cus_1")
    assert event.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert event.checkout_ref is None


@pytest.mark.parametrize("created", [None, "1700000000", True, 10**20, float("nan")])
def test_an_odd_or_missing_creation_time_is_none(created: object) -> None:
    body = {"id": "e", "type": "invoice.paid", "data": {"object": {"customer": "cus_1"}}}
    if created is not None:
        body["created"] = created
    event = event_from_payload(body)
    assert event.kind == "payment_succeeded" and event.created_at is None


def test_a_checkout_event_names_its_session_and_workspace() -> None:
    event = event_from_payload(
        {
            "type": "checkout.session.completed",
            "data": {"object": {"id": "cs_1", "client_reference_id": "ws_1"}},
        }
    )
    assert (event.kind, event.checkout_ref, event.workspace_id) == (
        "checkout_completed",
        "cs_1",
        "ws_1",
    )


@pytest.mark.parametrize("body", [[], {"type": "invoice.paid"}, {"data": "x"}])
def test_a_body_that_is_no_event_is_rejected(body: object) -> None:
    with pytest.raises(WebhookRejected):
        event_from_payload(body)


SECOND = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state_at", "created_at", "stale"),
    [
        (None, SECOND, False),  # nothing set yet
        (SECOND, None, False),  # no time on the event: it applies, as before
        (SECOND, SECOND.replace(second=1), False),  # newer
        (SECOND.replace(microsecond=500_000), SECOND, False),  # same second: Stripe's grain
        (SECOND.replace(second=1), SECOND, True),  # made before the state it would replace
    ],
)
def test_stale_means_made_before_the_current_payment_state(
    state_at: datetime | None, created_at: datetime | None, stale: bool
) -> None:
    assert is_stale(state_at, created_at) is stale
