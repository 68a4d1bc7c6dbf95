"""A new user in headless Chromium: sign-up, payment method, first order, API key, mailbox
password — every page captured at desktop (1280x800) and phone (390x844) width."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Browser, Page

from adbtd.services.secretbox import SecretBox
from tests.e2e.harness import (
    DESKTOP,
    PASSWORD,
    STEP_TIMEOUT_MS,
    LiveServer,
    Shots,
    add_local_payment_method,
    create_key,
    place_first_order,
    reveal_password,
    sign_up,
    unique_email,
    wait_for_order,
    with_phone_copy,
)
from tests.support.resources import add_inventory, unique_domain

pytestmark = pytest.mark.slow
PAGES = [
    ("overview", "/dashboard/"),
    ("orders", "/dashboard/orders"),
    ("domains", "/dashboard/domains"),
    ("ips", "/dashboard/ips"),
    ("mailboxes", "/dashboard/mailboxes"),
    ("api-keys", "/dashboard/api-keys"),
    ("billing", "/dashboard/billing"),
]


def no_horizontal_scroll(page: Page) -> None:
    """Nothing on the page is wider than the viewport (tables stack on phones)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{page.url} overflows by {overflow}px"


def test_new_user_from_sign_up_to_mailbox_password(
    chromium: Browser, live_server: LiveServer
) -> None:
    add_inventory(live_server.runtime)
    base = live_server.url
    context = chromium.new_context(viewport=DESKTOP)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    desktop, phone = Shots("desktop-"), Shots("phone-")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{base}/dashboard/signup")
    desktop.take(page, "signup")
    sign_up(page, base, unique_email("walk"))
    desktop.take(page, "overview-new")

    add_local_payment_method(page)
    domain = unique_domain("walk")
    place_first_order(page, base, domain, 2, ["alice", "bob"])
    desktop.take(page, "orders-pending")
    wait_for_order(page, base)

    token = create_key(page, base, "browser key")
    desktop.take(page, "api-keys-created")
    page.goto(f"{base}/dashboard/api-keys")  # any later visit: the plaintext is gone for good
    assert token not in page.content()
    assert f"adbtd_live_{token[11:19]}" in page.inner_text("main")
    assert page.locator("tbody tr").count() == 1

    password = reveal_password(page, base, f"alice@{domain}")
    desktop.take(page, "mailboxes-revealed")
    me = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    boxes = httpx.get(f"{base}/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"})
    alice = next(b for b in boxes.json()["data"] if b["email"] == f"alice@{domain}")
    from adbtd.db.models import Mailbox

    with live_server.runtime.db.transaction() as session:
        row = session.get(Mailbox, alice["id"])
        assert row is not None and row.password_encrypted is not None
        sealed = row.password_encrypted
    box = SecretBox(live_server.runtime.settings.secret_key, "mailbox-password")
    assert password == box.open(sealed)
    page.reload()
    assert password not in page.content()

    for name, path in PAGES:
        page.goto(base + path)
        desktop.take(page, name)
        no_horizontal_scroll(page)

    def phone_walk(phone_page: Page) -> None:
        for name, path in PAGES:
            phone_page.goto(base + path)
            phone.take(phone_page, name)
            no_horizontal_scroll(phone_page)
        phone_page.goto(f"{base}/dashboard/mailboxes")
        phone_page.locator("section.mailbox", has_text=f"bob@{domain}").locator(
            "button:has-text('Reveal password')"
        ).click()
        phone_page.locator("section.mailbox", has_text=f"bob@{domain}").locator(
            "code.secret"
        ).wait_for()
        phone.take(phone_page, "mailboxes-revealed")

    with_phone_copy(chromium, context, phone_walk)

    page.click("button:has-text('Sign out')")
    page.wait_for_selector("text=You are signed out.")
    desktop.take(page, "login")
    page.goto(f"{base}/dashboard/billing")
    assert "/dashboard/login" in page.url
    context.close()
    assert not errors, errors
    assert len(desktop.taken) >= 12 and len(phone.taken) >= 8


def test_pages_for_signed_out_visitors_fit_a_phone(
    chromium: Browser, live_server: LiveServer
) -> None:
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    shots = Shots("phone-")
    for name in ("signup", "login"):
        page.goto(f"{live_server.url}/dashboard/{name}")
        shots.take(page, name)
        no_horizontal_scroll(page)
    page.fill("input[name=email]", "nobody@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    assert "Wrong email or password." in page.inner_text("main")
    context.close()


def test_stripe_checkout_in_the_browser(
    chromium: Browser,
    settings_factory: Callable[..., object],
    localstripe_server: object,
    stripe_prices: str,
) -> None:
    from adbtd.runtime import Runtime
    from tests.e2e.harness import free_port
    from tests.support.localstripe import API_KEY, WEBHOOK_SECRET

    port = free_port()
    settings = settings_factory(
        public_base_url=f"http://127.0.0.1:{port}",
        billing_provider="stripe",
        stripe_api_key=API_KEY,
        stripe_api_base=localstripe_server.url,  # type: ignore[attr-defined]
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_prices=stripe_prices,
    )
    runtime = Runtime.from_settings(settings)  # type: ignore[arg-type]
    server = LiveServer(runtime, port)
    server.start()
    try:
        context = chromium.new_context(viewport=DESKTOP)
        context.set_default_timeout(STEP_TIMEOUT_MS)
        page = context.new_page()
        sign_up(page, server.url, unique_email("stripe"))
        page.click("a.button:has-text('Add a payment method')")
        page.wait_for_url(re.compile(r".*/checkout/cs_test_\w+$"))
        page.click("button:has-text('Save card')")
        page.wait_for_selector("text=Payment method saved")
        assert page.url.startswith(f"{server.url}/dashboard/billing")
        assert "on file" in page.inner_text("main")
        context.close()
    finally:
        server.stop()
        runtime.close()
