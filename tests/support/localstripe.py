"""localstripe (PyPI) on a loopback port for the Stripe adapter's tests, with the few gaps filled.

Run as ``python -m tests.support.localstripe --port N`` (the ``localstripe_server`` fixture does).
On top of stock localstripe it adds what the adapter uses and localstripe lacks, the way Stripe
behaves:

- ``Idempotency-Key``: a POST repeated with the same key gets the first answer replayed and does
  nothing again (``GET /_test/idempotency`` lists keys and replays);
- ``price`` accepted wherever localstripe knows only ``plan`` (Stripe treats them alike);
- Checkout Sessions in setup mode (``/v1/checkout/sessions``) with a hosted page at
  ``/checkout/<id>`` that saves a test card, attaches it to the customer, completes the session,
  emits ``checkout.session.completed`` and redirects to the success URL;
- nothing is pickled to ``/tmp`` (parallel runs never share a store).
"""

from __future__ import annotations

import argparse
import html
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_adbtd_localstripe"
WEBHOOK_SECRET = "whsec_adbtd_test_secret"
PRICES = {
    "domain": ("price_adbtd_domain", 100),
    "ip": ("price_adbtd_ip", 500),
    "mailbox": ("price_adbtd_mailbox", 200),
}


@dataclass
class LocalStripe:
    """A running server; ``url`` is the API base for ``ADBTD_STRIPE_API_BASE``."""

    url: str
    process: subprocess.Popen[bytes]

    def get(self, path: str) -> Any:
        response = httpx.get(self.url + path, auth=(API_KEY, ""), timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, data: dict[str, str] | None = None) -> Any:
        response = httpx.post(self.url + path, data=data or {}, auth=(API_KEY, ""), timeout=10)
        response.raise_for_status()
        return response.json()

    def complete_checkout(self, session_id: str, card: str = "4242424242424242") -> Any:
        """What a customer does on the hosted page: save a card; returns the session."""
        return self.post(f"/_test/checkout/{session_id}/complete", {"card": card})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def localstripe_server() -> Iterator[LocalStripe]:
    """One localstripe per test session (per xdist worker), stopped at the end."""
    with tempfile.TemporaryFile() as log:
        server = _start(log)
        try:
            yield server
        finally:
            server.process.terminate()
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def _start(log: IO[bytes]) -> LocalStripe:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.localstripe", "--port", str(port)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    server = LocalStripe(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 20
    while True:
        try:
            server.get("/v1/customers")
            return server
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                log.seek(0)
                error = log.read().decode(errors="replace")
                raise RuntimeError(f"localstripe did not start: {error[-2000:]}") from None
            time.sleep(0.1)


@pytest.fixture(scope="session")
def stripe_prices(localstripe_server: LocalStripe) -> str:
    """Monthly prices created once in localstripe; the value of ``ADBTD_STRIPE_PRICES``."""
    for kind, (price_id, cents) in PRICES.items():
        localstripe_server.post(
            "/v1/plans",
            {
                "id": price_id,
                "amount": str(cents),
                "currency": "usd",
                "interval": "month",
                "product[name]": f"adbtd {kind}",
            },
        )
    return "usd:" + ",".join(f"{kind}={ref}" for kind, (ref, _c) in PRICES.items())


# --- the server side: runs in the subprocess only --------------------------------------------


def _patch_and_serve(port: int) -> None:  # pragma: no cover - runs in the subprocess
    from aiohttp import web
    from localstripe import resources, server
    from localstripe.errors import UserError
    from localstripe.resources import (
        Customer,
        PaymentMethod,
        SetupIntent,
        StripeObject,
        Subscription,
        SubscriptionItem,
        store,
    )
    from localstripe.webhooks import schedule_webhook

    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]

    def accept_price(cls: Any) -> None:
        original = cls.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            if "price" in kwargs:
                kwargs["plan"] = kwargs.pop("price")
            for item in kwargs.get("items") or []:
                if isinstance(item, dict) and "price" in item:
                    item["plan"] = item.pop("price")
            original(self, *args, **kwargs)

        cls.__init__ = init

    accept_price(Subscription)
    accept_price(SubscriptionItem)

    def create_attached_item(cls: Any, **data: Any) -> Any:
        """As Stripe does: a new item is listed on its subscription, one item per price."""
        subscription = Subscription._api_retrieve(data.get("subscription") or "")
        price = data.get("price") or data.get("plan")
        if any(item.plan.id == price for item in subscription.items._list):
            raise UserError(400, "Cannot add multiple subscription items with the same price")
        item = cls(**data)
        subscription.items._list.append(item)
        return item

    SubscriptionItem._api_create = classmethod(create_attached_item)

    class CheckoutSession(StripeObject):  # type: ignore[misc]
        object = "checkout.session"
        _id_prefix = "cs_test_"

        def __init__(
            self,
            mode: str | None = None,
            customer: str | None = None,
            success_url: str | None = None,
            cancel_url: str | None = None,
            currency: str | None = None,
            client_reference_id: str | None = None,
            metadata: dict[str, str] | None = None,
            payment_method_types: list[str] | None = None,
            **kwargs: Any,
        ) -> None:
            if kwargs:
                raise UserError(400, "Unexpected " + ", ".join(kwargs))
            if mode != "setup" or not customer or not success_url or not cancel_url:
                raise UserError(400, "Bad request")
            Customer._api_retrieve(customer)
            super().__init__()
            intent = SetupIntent(customer=customer)
            self.mode = mode
            self.customer = customer
            self.success_url = success_url
            self.cancel_url = cancel_url
            self.currency = currency
            self.client_reference_id = client_reference_id
            self.metadata = metadata or {}
            self.setup_intent = intent.id
            self.status = "open"
            self.url = f"http://127.0.0.1:{port}/checkout/{self.id}"

    def session_of(request: web.Request) -> Any:
        found = store.get("checkout.session:" + request.match_info["id"])
        if found is None:
            raise UserError(404, "Not Found")
        return found

    def complete(checkout: Any, card: str) -> None:
        if checkout.status == "complete":
            return
        method = PaymentMethod(
            type="card",
            card={"number": card, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
        )
        PaymentMethod._api_attach(method.id, customer=checkout.customer)
        SetupIntent._api_confirm(checkout.setup_intent, payment_method=method.id)
        checkout.status = "complete"
        schedule_webhook(resources.Event("checkout.session.completed", checkout))

    async def create_session(request: web.Request) -> web.Response:
        data = await server.get_post_data(request) or {}
        return server.json_response(CheckoutSession(**data)._export())

    async def retrieve_session(request: web.Request) -> web.Response:
        return server.json_response(session_of(request)._export())

    async def hosted_page(request: web.Request) -> web.Response:
        checkout = session_of(request)
        page = f"""<!doctype html><html><head><meta name="viewport"
content="width=device-width, initial-scale=1"><title>localstripe checkout</title></head>
<body style="font-family:sans-serif;max-width:420px;margin:2rem auto;padding:0 1rem">
<h1>Save a card</h1><p>localstripe test checkout for {html.escape(checkout.customer)}</p>
<form method="post" action="/checkout/{checkout.id}">
<label>Card number <input name="card" value="4242424242424242"></label>
<p><button type="submit">Save card</button></p></form></body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def hosted_submit(request: web.Request) -> web.Response:
        checkout = session_of(request)
        form = await request.post()
        complete(checkout, str(form.get("card") or "4242424242424242"))
        target = checkout.success_url.replace("{CHECKOUT_SESSION_ID}", checkout.id)
        raise web.HTTPSeeOther(target)

    async def test_complete(request: web.Request) -> web.Response:
        checkout = session_of(request)
        data = await server.get_post_data(request) or {}
        complete(checkout, str(data.get("card") or "4242424242424242"))
        return server.json_response(checkout._export())

    replays: dict[tuple[str, str], tuple[int, bytes]] = {}
    counts: dict[str, int] = {}

    @web.middleware
    async def idempotency(request: web.Request, handler: Any) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or not request.path.startswith("/v1/"):
            return await handler(request)
        cache_key = (request.path, key)
        if cache_key in replays:
            counts[key] = counts.get(key, 1) + 1
            status, body = replays[cache_key]
            return web.Response(
                status=status,
                body=body,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        response = await handler(request)
        if isinstance(response, web.Response) and response.body is not None:
            body = response.body if isinstance(response.body, bytes) else b""
            replays[cache_key] = (response.status, body)
            counts[key] = 1
        return response

    async def idempotency_report(_request: web.Request) -> web.Response:
        return server.json_response({"requests": counts})

    app = server.app
    app.middlewares.insert(1, idempotency)
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get("/v1/checkout/sessions/{id}", retrieve_session)
    app.router.add_get("/checkout/{id}", hosted_page)
    app.router.add_post("/checkout/{id}", hosted_submit)
    app.router.add_post("/_test/checkout/{id}/complete", test_complete)
    app.router.add_get("/_test/idempotency", idempotency_report)

    original_auth = server.auth_middleware

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(("/checkout/", "/_test/")):
            return await handler(request)
        return await original_auth(request, handler)

    app.middlewares[app.middlewares.index(original_auth)] = auth
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    _patch_and_serve(parser.parse_args().port)
