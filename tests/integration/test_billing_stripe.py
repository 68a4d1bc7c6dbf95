"""The Stripe adapter against localstripe: checkout, subscription quantities, idempotent retries,
webhook signatures (signed here with the endpoint secret, as Stripe signs them)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adbtd.adapters.billing import (
    BillingProvider,
    PushResult,
    QuantityChange,
    make_billing_provider,
)
from adbtd.api.app import create_app
from adbtd.db.models import BillingAccount, SubscriptionItem
from adbtd.runtime import Runtime
from adbtd.services import api_keys, billing_flows, orders, workspaces
from adbtd.settings import Settings
from adbtd.workers.billing import BillingPusher
from tests.support.localstripe import (
    API_KEY,
    PRICES,
    WEBHOOK_SECRET,
    LocalStripe,
    localstripe_server,
    stripe_prices,
)
from tests.support.resources import add_inventory, provision, unique_domain

__all__ = ["localstripe_server", "stripe_prices"]


@dataclass
class StripeWorld:
    runtime: Runtime
    provider: BillingProvider
    stripe: LocalStripe
    client: TestClient

    def workspace(self, slug: str | None = None) -> str:
        with self.runtime.db.transaction() as session:
            ws = workspaces.create_workspace(
                session,
                slug=slug or unique_domain("ws").split(".")[0],
                name="Stripe Co",
                billing_provider="stripe",
            )
            return ws.id

    def account(self, workspace_id: str) -> BillingAccount:
        with self.runtime.db.transaction() as session:
            account = session.get(BillingAccount, workspace_id)
            assert account is not None
            return account

    def checkout(self, workspace_id: str) -> str:
        """Start and finish a checkout at localstripe; returns the session id."""
        url = billing_flows.start_checkout(
            self.runtime.db,
            self.provider,
            workspace_id=workspace_id,
            base_url="http://dashboard.test",
        )
        match = re.search(r"/checkout/(cs_test_\w+)$", url)
        assert match, url
        self.stripe.complete_checkout(match.group(1))
        return match.group(1)

    def event(self, type_: str, object_id: str) -> bytes:
        """The event localstripe recorded for an object, as the bytes Stripe would send."""
        after = ""
        while True:
            page = self.stripe.get(f"/v1/events?type={type_}&limit=100{after}")
            for event in page["data"]:
                if event["data"]["object"]["id"] == object_id:
                    return json.dumps(event).encode()
            if not page["has_more"] or not page["data"]:
                raise AssertionError(f"no {type_} event for {object_id}")
            after = f"&starting_after={page['data'][-1]['id']}"

    def deliver(self, payload: bytes, signature: str | None = None) -> int:
        headers = {"Content-Type": "application/json"}
        headers["Stripe-Signature"] = signature or sign(payload, WEBHOOK_SECRET)
        return self.client.post("/webhooks/stripe", content=payload, headers=headers).status_code


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's scheme: ``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + payload)>``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


@pytest.fixture
def world(
    settings_factory: Callable[..., Settings],
    localstripe_server: LocalStripe,
    stripe_prices: str,
) -> Iterator[StripeWorld]:
    settings = settings_factory(
        billing_provider="stripe",
        stripe_api_key=API_KEY,
        stripe_api_base=localstripe_server.url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_prices=stripe_prices,
    )
    runtime = Runtime.from_settings(settings)
    provider = make_billing_provider(settings)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield StripeWorld(runtime, provider, localstripe_server, client)
    runtime.close()


def test_checkout_webhook_records_the_payment_method(world: StripeWorld) -> None:
    workspace_id = world.workspace()
    session_id = world.checkout(workspace_id)
    assert world.account(workspace_id).payment_method_ref is None
    assert world.deliver(world.event("checkout.session.completed", session_id)) == 200
    account = world.account(workspace_id)
    assert account.payment_method_ref and account.payment_method_ref.startswith("pm_")
    customer = world.stripe.get(f"/v1/customers/{account.customer_ref}")
    assert customer["metadata"]["workspace_id"] == workspace_id
    assert customer["invoice_settings"]["default_payment_method"] == account.payment_method_ref
    # Stripe delivers at least once: a second delivery changes nothing.
    assert world.deliver(world.event("checkout.session.completed", session_id)) == 200
    assert world.account(workspace_id).payment_method_ref == account.payment_method_ref


def test_subscription_quantities_follow_domains_ips_and_mailboxes(world: StripeWorld) -> None:
    add_inventory(world.runtime)
    workspace_id = world.workspace()
    world.deliver(world.event("checkout.session.completed", world.checkout(workspace_id)))
    assert world.account(workspace_id).subscription_ref is None  # nothing to bill yet
    name = unique_domain()
    with world.runtime.db.transaction() as session:
        orders.place_first_order(
            session,
            workspace_id=workspace_id,
            domain=name,
            ip_count=2,
            emails=[f"a@{name}", f"b@{name}"],
            settings=world.runtime.settings,
        )
    provision(world.runtime)
    result = billing_flows.push_quantities(
        world.runtime.db, world.provider, world.runtime.settings, workspace_id=workspace_id
    )
    assert result is not None and result.subscription_ref
    assert stripe_quantities(world, workspace_id) == {"domain": 1, "ip": 2, "mailbox": 2}
    subscription = world.stripe.get(f"/v1/subscriptions/{result.subscription_ref}")
    assert subscription["customer"] == world.account(workspace_id).customer_ref
    assert subscription["metadata"]["workspace_id"] == workspace_id
    with world.runtime.db.transaction() as session:
        orders.place_mailbox_order(
            session,
            workspace_id=workspace_id,
            emails=[f"c@{name}"],
            settings=world.runtime.settings,
        )
    provision(world.runtime)
    again = billing_flows.push_quantities(
        world.runtime.db, world.provider, world.runtime.settings, workspace_id=workspace_id
    )
    assert again is not None and again.subscription_ref == result.subscription_ref
    assert stripe_quantities(world, workspace_id) == {"domain": 1, "ip": 2, "mailbox": 3}


def stripe_quantities(world: StripeWorld, workspace_id: str) -> dict[str, int]:
    with world.runtime.db.transaction() as session:
        items = list(
            session.scalars(
                select(SubscriptionItem).where(SubscriptionItem.workspace_id == workspace_id)
            )
        )
    found = {}
    for item in items:
        assert item.item_ref, item.kind
        remote = world.stripe.get(f"/v1/subscription_items/{item.item_ref}")
        assert remote["plan"]["id"] == PRICES[item.kind][0]
        found[item.kind] = int(remote["quantity"])
    return found


class CrashAfterProvider:
    """The real adapter, but the worker 'dies' right after Stripe answered the push."""

    def __init__(self, inner: BillingProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.hosted_checkout = inner.hosted_checkout
        self.crashes = 1

    def __getattr__(self, attr: str) -> object:
        return getattr(self.inner, attr)

    def push_quantities(self, **kwargs: object) -> PushResult:
        result = self.inner.push_quantities(**kwargs)  # type: ignore[arg-type]
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("worker died before recording the result")
        return result


def push_that_crashes(world: StripeWorld) -> tuple[str, str, CrashAfterProvider]:
    """A paying workspace with a provisioned first order whose first push reached Stripe and
    then 'crashed' before anything was recorded; (workspace, domain, the crashing provider)."""
    add_inventory(world.runtime)
    workspace_id = world.workspace()
    world.deliver(world.event("checkout.session.completed", world.checkout(workspace_id)))
    name = unique_domain()
    with world.runtime.db.transaction() as session:
        orders.place_first_order(
            session,
            workspace_id=workspace_id,
            domain=name,
            ip_count=1,
            emails=[f"a@{name}"],
            settings=world.runtime.settings,
        )
    provision(world.runtime)
    crashing = CrashAfterProvider(world.provider)
    with pytest.raises(RuntimeError):
        billing_flows.push_quantities(
            world.runtime.db, crashing, world.runtime.settings, workspace_id=workspace_id
        )
    return workspace_id, name, crashing


def only_subscription(world: StripeWorld, workspace_id: str, result: PushResult) -> list[Any]:
    """The customer's subscriptions at Stripe, asserted to be exactly the pushed one."""
    customer = world.account(workspace_id).customer_ref
    subscriptions: list[Any] = world.stripe.get(f"/v1/subscriptions?customer={customer}")["data"]
    assert [s["id"] for s in subscriptions] == [result.subscription_ref]
    return subscriptions


def test_a_retried_push_never_creates_a_second_subscription(world: StripeWorld) -> None:
    workspace_id, _name, crashing = push_that_crashes(world)
    assert world.account(workspace_id).subscription_ref is None  # nothing was recorded
    retried = billing_flows.push_quantities(
        world.runtime.db, crashing, world.runtime.settings, workspace_id=workspace_id
    )
    assert retried is not None
    only_subscription(world, workspace_id, retried)
    assert stripe_quantities(world, workspace_id) == {"domain": 1, "ip": 1, "mailbox": 1}
    # The retry adopted what the first try made: no create was sent again, nothing changed.
    sent = world.stripe.get("/_test/idempotency")["requests"]
    mine = {k: n for k, n in sent.items() if workspace_id in k}
    creates = [n for k, n in mine.items() if k.startswith("adbtd:subscription:")]
    assert creates == [1], mine
    assert all(n == 1 for n in mine.values()), mine


def test_a_change_between_a_crash_and_its_retry_adopts_the_live_subscription(
    world: StripeWorld,
) -> None:
    workspace_id, name, crashing = push_that_crashes(world)
    # Before the retry every quantity changes, so no idempotency key of the first try is reused.
    second = unique_domain()
    with world.runtime.db.transaction() as session:
        orders.place_domain_order(
            session,
            workspace_id=workspace_id,
            name=second,
            mode="byo",
            settings=world.runtime.settings,
        )
        orders.place_ip_order(
            session, workspace_id=workspace_id, count=1, settings=world.runtime.settings
        )
        orders.place_mailbox_order(
            session,
            workspace_id=workspace_id,
            emails=[f"b@{name}"],
            settings=world.runtime.settings,
        )
    provision(world.runtime)
    retried = billing_flows.push_quantities(
        world.runtime.db, crashing, world.runtime.settings, workspace_id=workspace_id
    )
    assert retried is not None
    subscriptions = only_subscription(world, workspace_id, retried)
    [subscription] = subscriptions
    assert len(subscription["items"]["data"]) == 3  # one item per kind, none twice
    assert stripe_quantities(world, workspace_id) == {"domain": 2, "ip": 2, "mailbox": 2}


def test_quantity_keys_change_with_each_local_change(world: StripeWorld) -> None:
    workspace_id = world.workspace()
    from datetime import UTC, datetime, timedelta

    item = SubscriptionItem(
        workspace_id=workspace_id,
        kind="mailbox",
        quantity=2,
        item_ref="si_x",
        updated_at=datetime(2026, 5, 3, tzinfo=UTC),
    )
    first = billing_flows.quantity_key(workspace_id, item)
    assert billing_flows.quantity_key(workspace_id, item) == first  # a retry: same key
    item.updated_at += timedelta(seconds=1)  # 2 → 3 → 2 later: a new change, a new key
    assert billing_flows.quantity_key(workspace_id, item) != first


@pytest.mark.parametrize(
    "tamper",
    ["body", "secret", "stale", "missing", "garbage", "v0-only"],
)
def test_webhooks_with_a_bad_signature_are_refused(world: StripeWorld, tamper: str) -> None:
    workspace_id = world.workspace()
    payload = world.event("checkout.session.completed", world.checkout(workspace_id))
    good = sign(payload, WEBHOOK_SECRET)
    body, signature = payload, good
    if tamper == "body":
        body = payload.replace(b"complete", b"completf")
    elif tamper == "secret":
        signature = sign(payload, "whsec_someone_else")
    elif tamper == "stale":
        signature = sign(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    elif tamper == "garbage":
        signature = "nonsense"
    elif tamper == "v0-only":
        signature = good.replace("v1=", "v0=")
    headers = {"Content-Type": "application/json"}
    if tamper != "missing":
        headers["Stripe-Signature"] = signature
    response = world.client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 400
    assert world.account(workspace_id).payment_method_ref is None


def test_payment_failure_and_recovery_flip_the_delinquent_flag(world: StripeWorld) -> None:
    workspace_id = world.workspace()
    world.deliver(world.event("checkout.session.completed", world.checkout(workspace_id)))
    customer = world.account(workspace_id).customer_ref
    now = int(time.time())

    def invoice_event(type_: str, created: int | None) -> bytes:
        invoice = {"id": "in_test", "object": "invoice", "customer": customer}
        event = {"id": f"evt_{type_}_{created}", "type": type_, "data": {"object": invoice}}
        if created is not None:
            event["created"] = created
        return json.dumps(event).encode()

    assert world.deliver(invoice_event("invoice.payment_failed", now + 10)) == 200
    assert world.account(workspace_id).delinquent is True
    assert world.deliver(invoice_event("invoice.paid", now + 20)) == 200
    assert world.account(workspace_id).delinquent is False
    # Stripe's order is not guaranteed: a failure made before the payment arrives late.
    assert world.deliver(invoice_event("invoice.payment_failed", now + 15)) == 200
    assert world.account(workspace_id).delinquent is False
    assert world.deliver(invoice_event("invoice.payment_failed", now + 30)) == 200
    assert world.account(workspace_id).delinquent is True
    assert world.deliver(invoice_event("invoice.paid", now + 25)) == 200  # late, older
    assert world.account(workspace_id).delinquent is True
    # A new payment method clears it; a failure made before that checkout stays history.
    world.deliver(world.event("checkout.session.completed", world.checkout(workspace_id)))
    assert world.account(workspace_id).delinquent is False
    assert world.deliver(invoice_event("invoice.payment_failed", now - 60)) == 200
    assert world.account(workspace_id).delinquent is False
    unrelated = json.dumps({"id": "evt_x", "type": "customer.created", "data": {"object": {}}})
    assert world.deliver(unrelated.encode()) == 200


def test_dashboard_checkout_goes_to_stripe_and_back(world: StripeWorld) -> None:
    client = world.client
    page = client.get("/dashboard/signup")
    token = re.search(r'name="csrf_token" value="(\w+)"', page.text)
    assert token
    client.post(
        "/dashboard/signup",
        data={
            "csrf_token": token.group(1),
            "email": "stripe-user@example.com",
            "password": "correct horse battery",
            "workspace_name": "Striped",
        },
    )
    start = client.get("/dashboard/billing/checkout", follow_redirects=False)
    assert start.status_code == 303
    location = start.headers["location"]
    assert location.startswith(world.stripe.url + "/checkout/cs_test_")
    session_id = location.rsplit("/", 1)[1]
    checkout = world.stripe.get(f"/v1/checkout/sessions/{session_id}")
    assert checkout["mode"] == "setup"
    assert checkout["success_url"].endswith("/checkout/done?session_id={CHECKOUT_SESSION_ID}")
    world.stripe.complete_checkout(session_id)
    done = client.get(f"/dashboard/billing/checkout/done?session_id={session_id}")
    assert done.status_code == 200 and "Payment method saved" in done.text
    assert "on file" in client.get("/dashboard/billing").text
    # Someone else's finished checkout cannot be claimed through the success URL.
    other = world.workspace()
    foreign = world.checkout(other)
    assert client.get(f"/dashboard/billing/checkout/done?session_id={foreign}").status_code == 404
    assert world.account(other).payment_method_ref is None


def test_local_provider_refuses_webhooks(client: TestClient) -> None:
    payload = b'{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {}}}'
    response = client.post(
        "/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET)},
    )
    assert response.status_code == 400


def test_local_provider_keeps_quantities_without_calls(runtime: Runtime) -> None:
    provider = make_billing_provider(runtime.settings)
    change = QuantityChange("ip", 2, "price_local_ip", None, "k")
    result = provider.push_quantities(
        customer_ref="cus_local_ws",
        subscription_ref=None,
        workspace_id="ws",
        changes=[change],
        create_key="c",
    )
    assert result.subscription_ref == "sub_local_ws"
    assert result.item_refs == {"ip": "si_local_ws_ip"}


def test_monthly_estimate_uses_prices_per_currency(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(billing_prices="usd:domain=1.00,ip=5.00,mailbox=2.00;eur:ip=4.5")
    usd = billing_flows.monthly_estimate(
        settings, currency="usd", quantities={"domain": 1, "ip": 2, "mailbox": 3}
    )
    assert str(usd.total) == "17.00"
    eur = billing_flows.monthly_estimate(settings, currency="EUR", quantities={"ip": 2})
    assert str(eur.total) == "9.0" and eur.currency == "eur"


def test_a_subscription_cancelled_at_stripe_is_started_again(world: StripeWorld) -> None:
    add_inventory(world.runtime)
    workspace_id = world.workspace()
    world.deliver(world.event("checkout.session.completed", world.checkout(workspace_id)))
    name = unique_domain()
    with world.runtime.db.transaction() as session:
        orders.place_first_order(
            session,
            workspace_id=workspace_id,
            domain=name,
            ip_count=1,
            emails=[f"a@{name}"],
            settings=world.runtime.settings,
        )
    provision(world.runtime)
    first = billing_flows.push_quantities(
        world.runtime.db, world.provider, world.runtime.settings, workspace_id=workspace_id
    )
    assert first is not None and first.subscription_ref
    response = httpx.delete(
        f"{world.stripe.url}/v1/subscriptions/{first.subscription_ref}", auth=(API_KEY, "")
    )
    assert response.status_code == 200
    ended = world.event("customer.subscription.deleted", first.subscription_ref)
    assert world.deliver(ended) == 200
    assert world.account(workspace_id).subscription_ref is None
    second = billing_flows.push_quantities(
        world.runtime.db, world.provider, world.runtime.settings, workspace_id=workspace_id
    )
    assert second is not None and second.subscription_ref not in (None, first.subscription_ref)
    assert stripe_quantities(world, workspace_id) == {"domain": 1, "ip": 1, "mailbox": 1}


def wait_for_quantities(
    world: StripeWorld, workspace_id: str, expected: dict[str, int], timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        try:
            seen = stripe_quantities(world, workspace_id)
        except AssertionError as exc:  # no subscription item pushed yet
            seen = exc
        if seen == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"Stripe quantities stayed {seen!r}, expected {expected}")


def test_pusher_follows_orders_and_deletes_without_a_manual_push(world: StripeWorld) -> None:
    """The worker and the DELETE routes notify the pusher, which pushes in the background."""
    add_inventory(world.runtime)
    workspace_id = world.workspace()
    world.deliver(world.event("checkout.session.completed", world.checkout(workspace_id)))
    pusher = BillingPusher(world.runtime, provider=world.provider)
    pusher.start()
    try:
        name = unique_domain()
        with world.runtime.db.transaction() as session:
            orders.place_first_order(
                session,
                workspace_id=workspace_id,
                domain=name,
                ip_count=1,
                emails=[f"a@{name}", f"b@{name}"],
                settings=world.runtime.settings,
            )
            token = api_keys.create_key(session, workspace_id=workspace_id, name="k").token
        provision(world.runtime)
        wait_for_quantities(world, workspace_id, {"domain": 1, "ip": 1, "mailbox": 2})
        headers = {"Authorization": f"Bearer {token}"}
        boxes = world.client.get("/api/v1/mailboxes", headers=headers).json()["data"]
        deleted = world.client.delete(f"/api/v1/mailboxes/{boxes[0]['id']}", headers=headers)
        assert deleted.status_code == 200
        wait_for_quantities(world, workspace_id, {"domain": 1, "ip": 1, "mailbox": 1})
    finally:
        pusher.stop()
