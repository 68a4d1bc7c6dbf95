"""Dashboard over HTTP: sign-up, sessions, CSRF, isolation between users, keys, orders, billing."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from adbtd.api.app import create_app
from adbtd.dashboard.app import ROUTE_MODULES
from adbtd.db.models import (
    ApiKey,
    BillingAccount,
    DashboardSession,
    LoginThrottle,
    Mailbox,
    User,
)
from adbtd.runtime import Runtime
from adbtd.services import mailboxes, users
from adbtd.services.secretbox import SecretBox
from adbtd.settings import Settings
from tests.support.resources import add_inventory, provision, unique_domain

TOKEN = re.compile(r"adbtd_live_[A-Za-z0-9_-]{43}")
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
PASSWORD = "correct horse battery staple"


class Browser:
    """A TestClient that keeps cookies and the last page's CSRF token, like a browser."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        response = self.client.get(path, **kwargs)  # type: ignore[arg-type]
        self._remember(response.text)
        return response

    def post(
        self, path: str, data: dict[str, str] | None = None, **kwargs: object
    ) -> httpx.Response:
        form = {"csrf_token": self.csrf, **(data or {})}
        response = self.client.post(path, data=form, **kwargs)  # type: ignore[arg-type]
        self._remember(response.text)
        return response

    def _remember(self, text: str) -> None:
        found = CSRF.search(text)
        if found:
            self.csrf = found.group(1)

    def sign_up(self, email: str, workspace: str = "Acme") -> None:
        self.get("/dashboard/signup")
        response = self.post(
            "/dashboard/signup",
            {"email": email, "password": PASSWORD, "workspace_name": workspace},
        )
        assert response.status_code == 200, response.text
        assert "Welcome" in response.text

    def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        self.get("/dashboard/login")
        return self.post("/dashboard/login", {"email": email, "password": password})


@pytest.fixture
def app_factory(runtime: Runtime) -> Iterator[Callable[[], Browser]]:
    app = create_app(runtime)
    clients: list[TestClient] = []

    def make() -> Browser:
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return Browser(client)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def browser(app_factory: Callable[[], Browser]) -> Browser:
    return app_factory()


def workspace_of(runtime: Runtime, email: str) -> str:
    from adbtd.db.models import Membership

    with runtime.db.transaction() as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        ws = session.scalar(select(Membership.workspace_id).where(Membership.user_id == user.id))
        assert ws is not None
        return ws


def test_sign_up_stores_argon2_hash_and_sets_a_safe_cookie(
    browser: Browser, runtime: Runtime
) -> None:
    browser.get("/dashboard/signup")
    response = browser.post(
        "/dashboard/signup",
        {"email": "Ann@Example.com", "password": PASSWORD, "workspace_name": "Ann's Mail"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("adbtd_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # embedded default: plain HTTP on loopback
    with runtime.db.transaction() as session:
        user = session.scalar(select(User).where(User.email == "ann@example.com"))
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    page = browser.get("/dashboard/")
    assert page.status_code == 200
    assert "Ann&#39;s Mail" in page.text


def test_cookie_is_secure_outside_the_embedded_default(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(env="production", secret_key="s" * 40)
    runtime = Runtime.from_settings(settings)
    try:
        with TestClient(create_app(runtime), base_url="https://testserver") as client:
            browser = Browser(client)
            browser.get("/dashboard/signup")
            response = browser.post(
                "/dashboard/signup",
                {"email": "sec@example.com", "password": PASSWORD, "workspace_name": "Sec"},
                follow_redirects=False,
            )
            assert response.status_code == 303
            assert "Secure" in response.headers["set-cookie"]
    finally:
        runtime.close()


def test_bad_sign_ups_are_refused_with_a_message(browser: Browser) -> None:
    browser.get("/dashboard/signup")
    short = browser.post(
        "/dashboard/signup", {"email": "a@example.com", "password": "short", "workspace_name": "A"}
    )
    assert short.status_code == 400 and "at least 10" in short.text
    browser.sign_up("taken@example.com")
    other = Browser(browser.client)
    other.client.cookies.clear()
    other.get("/dashboard/signup")
    again = other.post(
        "/dashboard/signup",
        {"email": "taken@example.com", "password": PASSWORD, "workspace_name": "B"},
    )
    assert again.status_code == 400 and "already exists" in again.text


def test_pages_need_a_session_and_come_back_after_sign_in(
    browser: Browser, app_factory: Callable[[], Browser], runtime: Runtime
) -> None:
    browser.sign_up("back@example.com")
    workspace_id = workspace_of(runtime, "back@example.com")
    stranger = app_factory()
    target = f"/dashboard/billing/checkout?workspace={workspace_id}"
    response = stranger.get(target, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/dashboard/login?next=")
    stranger.get(response.headers["location"])
    done = stranger.post(
        "/dashboard/login",
        {"email": "back@example.com", "password": PASSWORD, "next": target},
        follow_redirects=False,
    )
    assert done.headers["location"] == target


def test_sign_in_never_redirects_off_site(browser: Browser) -> None:
    browser.sign_up("nav@example.com")
    browser.post("/dashboard/logout")
    for evil in ("https://evil.example/", "//evil.example/", "/dashboard/\\evil", "/api/v1/me"):
        browser.get("/dashboard/login")
        response = browser.post(
            "/dashboard/login",
            {"email": "nav@example.com", "password": PASSWORD, "next": evil},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/dashboard/"


def test_every_post_route_rejects_a_missing_or_foreign_csrf_token(
    browser: Browser, app_factory: Callable[[], Browser], runtime: Runtime
) -> None:
    browser.sign_up("csrf@example.com")
    other = app_factory()
    other.sign_up("csrf-other@example.com")
    posts = [
        route.path
        for module in ROUTE_MODULES
        for route in module.router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
    ]
    assert {"/login", "/signup", "/logout", "/api-keys", "/orders/first"} <= set(posts)
    for path in posts:
        url = "/dashboard" + path.replace("{key_id}", "key_x").replace("{mailbox_id}", "mb_x")
        missing = browser.client.post(url, data={"name": "x"})
        assert missing.status_code == 403, (path, missing.status_code)
        assert "Form expired" in missing.text
        foreign = browser.client.post(url, data={"csrf_token": other.csrf, "name": "x"})
        assert foreign.status_code == 403, (path, foreign.status_code)
        header = browser.client.post(url, headers={"X-CSRF-Token": "0" * 64})
        assert header.status_code == 403
    with runtime.db.transaction() as session:
        assert session.scalar(select(ApiKey.id)) is None
    assert browser.get("/dashboard/").status_code == 200


def test_sign_in_rotates_the_session_id(
    browser: Browser, app_factory: Callable[[], Browser], runtime: Runtime
) -> None:
    """A session id planted before sign-in (session fixation) never becomes a live session."""
    browser.sign_up("fix@example.com")
    browser.post("/dashboard/logout")
    planted = "attacker-chosen-session-id-0123456789"
    browser.client.cookies.set("adbtd_session", planted, path="/dashboard")
    browser.get("/dashboard/login")
    response = browser.post(
        "/dashboard/login",
        {"email": "fix@example.com", "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303
    fresh = response.cookies.get("adbtd_session")
    assert fresh and fresh != planted
    attacker = app_factory()
    attacker.client.cookies.set("adbtd_session", planted, path="/dashboard")
    denied = attacker.get("/dashboard/", follow_redirects=False)
    assert denied.status_code == 303
    # Signing in again replaces the previous session: the old id stops working too.
    browser.get("/dashboard/login")
    again = browser.post(
        "/dashboard/login",
        {"email": "fix@example.com", "password": PASSWORD},
        follow_redirects=False,
    )
    newer = again.cookies.get("adbtd_session")
    assert newer and newer != fresh
    replay = app_factory()
    replay.client.cookies.set("adbtd_session", fresh, path="/dashboard")
    assert replay.get("/dashboard/", follow_redirects=False).status_code == 303
    with runtime.db.transaction() as session:
        assert len(list(session.scalars(select(DashboardSession)))) == 1


def test_sign_out_ends_the_session(browser: Browser, app_factory: Callable[[], Browser]) -> None:
    browser.sign_up("out@example.com")
    token = browser.client.cookies.get("adbtd_session")
    browser.post("/dashboard/logout")
    thief = app_factory()
    thief.client.cookies.set("adbtd_session", token or "", path="/dashboard")
    assert thief.get("/dashboard/", follow_redirects=False).status_code == 303


def test_login_attempts_are_limited_per_account_and_per_address(
    app_factory: Callable[[], Browser], settings_factory: Callable[..., Settings]
) -> None:
    first = app_factory()
    first.sign_up("limit@example.com")
    first.post("/dashboard/logout")
    for _ in range(5):
        wrong = first.log_in("limit@example.com", "wrong password!")
        assert wrong.status_code == 401
        assert "Wrong email or password" in wrong.text
    refused = first.log_in("limit@example.com")  # even the right password, for now
    assert refused.status_code == 429
    assert "too many failed sign-in attempts; try again in 15 minutes" in refused.text
    # Per address: 20 failures over many accounts block the address for everyone.
    for n in range(15):
        first.log_in(f"nobody{n}@example.com", "wrong password!")
    blocked = first.log_in("someone-else@example.com", "wrong password!")
    assert blocked.status_code == 429


def test_unknown_account_and_wrong_password_answer_alike(browser: Browser) -> None:
    browser.sign_up("same@example.com")
    browser.post("/dashboard/logout")
    unknown = browser.log_in("nobody@example.com", PASSWORD)
    wrong = browser.log_in("same@example.com", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong email or password." in unknown.text and "Wrong email or password." in wrong.text


def test_an_unknown_account_costs_a_full_password_check(browser: Browser, runtime: Runtime) -> None:
    """No timing oracle: the unknown account is checked against a dummy argon2 hash."""
    with runtime.db.read() as session:
        attempt = users.begin_sign_in(
            session, email="nobody@example.com", client_ip="127.0.0.9", settings=runtime.settings
        )
    assert attempt.password_hash is None
    started = time.perf_counter()
    assert not users.password_matches(attempt, PASSWORD)
    assert time.perf_counter() - started > 0.01  # an argon2id verification, not a shortcut


def test_concurrent_failed_sign_ins_are_each_counted(runtime: Runtime) -> None:
    with runtime.db.transaction() as session:
        users.sign_up(
            session,
            email="race@example.com",
            password_hash=users.hash_password(PASSWORD),
            workspace_name="Race",
            billing_provider="local",
        )

    def fail(n: int) -> None:
        with runtime.db.read() as session:
            attempt = users.begin_sign_in(
                session,
                email="race@example.com",
                client_ip=f"10.0.0.{n}",
                settings=runtime.settings,
            )
        barrier.wait(10)
        with runtime.db.transaction() as session:
            users.finish_sign_in(
                session, attempt=attempt, matched=False, password="x", settings=runtime.settings
            )

    barrier = threading.Barrier(4)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(fail, range(4)))
    with runtime.db.read() as session:
        row = session.get(LoginThrottle, "account:race@example.com")
        assert row is not None and row.failures == 4


def test_api_key_plaintext_is_shown_exactly_once(browser: Browser, runtime: Runtime) -> None:
    browser.sign_up("keys@example.com")
    browser.get("/dashboard/api-keys")
    created = browser.post("/dashboard/api-keys", {"name": "ci/cd"})
    assert created.status_code == 200
    assert created.headers["cache-control"] == "no-store"
    tokens = TOKEN.findall(created.text)
    assert len(tokens) == 1
    token = tokens[0]
    listing = browser.get("/dashboard/api-keys")
    assert token not in listing.text
    assert TOKEN.search(listing.text) is None
    assert f"adbtd_live_{token[11:19]}…" in listing.text
    for page in ("/dashboard/", "/dashboard/billing", "/dashboard/mailboxes"):
        assert token not in browser.get(page).text
    with runtime.db.transaction() as session:
        key = session.scalar(select(ApiKey))
        assert key is not None and key.display_prefix == token[11:19]
        assert token not in (key.token_sha256, key.name)
    me = browser.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["data"]["apiKey"]["name"] == "ci/cd"
    assert "never" not in browser.get("/dashboard/api-keys").text.split("ci/cd")[1][:400]


def test_resubmitting_the_create_form_makes_no_second_key(
    browser: Browser, runtime: Runtime
) -> None:
    """A reload of the page that showed a new key re-posts its form: no second key appears."""
    browser.sign_up("reload@example.com")
    page = browser.get("/dashboard/api-keys")
    form_id = re.search(r'name="form_id" value="([^"]+)"', page.text)
    assert form_id is not None
    first = browser.post("/dashboard/api-keys", {"name": "ci", "form_id": form_id.group(1)})
    assert len(TOKEN.findall(first.text)) == 1
    again = browser.post("/dashboard/api-keys", {"name": "ci", "form_id": form_id.group(1)})
    assert again.status_code == 409
    assert TOKEN.search(again.text) is None
    assert "already submitted" in again.text
    with runtime.db.transaction() as session:
        assert len(session.scalars(select(ApiKey)).all()) == 1


def test_revoked_key_gets_401(browser: Browser, runtime: Runtime) -> None:
    browser.sign_up("revoke@example.com")
    browser.get("/dashboard/api-keys")
    token = TOKEN.findall(browser.post("/dashboard/api-keys", {"name": "old"}).text)[0]
    with runtime.db.transaction() as session:
        key_id = session.scalar(select(ApiKey.id))
    revoked = browser.post(f"/dashboard/api-keys/{key_id}/revoke")
    assert "The key is revoked" in revoked.text
    me = browser.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


def test_another_users_workspace_and_resources_are_404(
    app_factory: Callable[[], Browser], runtime: Runtime
) -> None:
    add_inventory(runtime)
    alice, mallory = app_factory(), app_factory()
    alice.sign_up("alice@example.com", "Alice Co")
    mallory.sign_up("mallory@example.com", "Mallory Co")
    alice_ws = workspace_of(runtime, "alice@example.com")
    alice.get("/dashboard/billing/checkout")
    alice.post("/dashboard/billing/checkout")
    domain = unique_domain()
    alice.get("/dashboard/orders")
    alice.post(
        "/dashboard/orders/first",
        {"domain": domain, "mode": "byo", "ip_count": "1", "mailboxes": "alice"},
    )
    provision(runtime)
    alice.get("/dashboard/api-keys")
    alice.post("/dashboard/api-keys", {"name": "alice key"})
    with runtime.db.transaction() as session:
        mailbox_id = session.scalar(select(Mailbox.id))
        key_id = session.scalar(select(ApiKey.id))
    for path in (
        f"/dashboard/?workspace={alice_ws}",
        f"/dashboard/mailboxes?workspace={alice_ws}",
        f"/dashboard/billing/checkout?workspace={alice_ws}",
        "/dashboard/?workspace=ws_doesnotexist",
    ):
        response = mallory.get(path)
        assert response.status_code == 404, path
        assert domain not in response.text
    mallory.get("/dashboard/")
    reveal = mallory.post(f"/dashboard/mailboxes/{mailbox_id}/password")
    assert reveal.status_code == 404
    mallory.get("/dashboard/")
    assert mallory.post(f"/dashboard/api-keys/{key_id}/revoke").status_code == 404
    with runtime.db.transaction() as session:
        key = session.get(ApiKey, key_id)
        assert key is not None and key.revoked_at is None
    for page in ("/dashboard/domains", "/dashboard/mailboxes", "/dashboard/orders"):
        assert domain not in mallory.get(page).text


def test_first_order_through_the_form_then_reveal_a_password(
    browser: Browser, runtime: Runtime
) -> None:
    add_inventory(runtime)
    browser.sign_up("order@example.com")
    browser.get("/dashboard/orders")
    domain = unique_domain()
    refused = browser.post(
        "/dashboard/orders/first",
        {"domain": domain, "mode": "byo", "ip_count": "1", "mailboxes": "alice"},
    )
    assert refused.status_code == 402
    assert "/dashboard/billing/checkout?workspace=ws_" in refused.text
    browser.get("/dashboard/billing/checkout")
    saved = browser.post("/dashboard/billing/checkout")
    assert "Payment method saved" in saved.text
    browser.get("/dashboard/orders")
    placed = browser.post(
        "/dashboard/orders/first",
        {"domain": domain, "mode": "byo", "ip_count": "2", "mailboxes": f"alice\nbob@{domain}"},
    )
    assert placed.status_code == 200
    assert "pending provision" in placed.text and domain in placed.text
    assert "Your first order" not in placed.text
    provision(runtime)
    assert "completed" in browser.get("/dashboard/orders").text
    domains_page = browser.get("/dashboard/domains").text
    assert f"_dmarc.{domain}" in domains_page and "v=spf1" in domains_page
    assert "._domainkey." in domains_page
    assert "not checked yet" in domains_page  # each record's state, before any DNS check
    ips_page = browser.get("/dashboard/ips").text
    assert ips_page.count("127.0.1.") >= 2
    page = browser.get("/dashboard/mailboxes")
    with runtime.db.transaction() as session:
        mailbox = session.scalar(select(Mailbox).where(Mailbox.email == f"alice@{domain}"))
        assert mailbox is not None and mailbox.password_encrypted is not None
        address = mailboxes.mailbox_address(session, mailbox)
    password = SecretBox(runtime.settings.secret_key, "mailbox-password").open(
        mailbox.password_encrypted
    )
    text = page.text
    assert password not in text
    assert f"{address}:{runtime.settings.submission_port}" in text
    assert f"{address}:{runtime.settings.imap_port}" in text
    full = browser.post(f"/dashboard/mailboxes/{mailbox.id}/password")
    assert password in full.text and full.headers["cache-control"] == "no-store"
    fragment = browser.client.post(
        f"/dashboard/mailboxes/{mailbox.id}/password",
        headers={"HX-Request": "true", "X-CSRF-Token": browser.csrf},
    )
    assert fragment.status_code == 200
    assert fragment.text.strip().startswith('<span class="password"')
    assert password in fragment.text
    assert password not in browser.get("/dashboard/mailboxes").text
    billing_page = browser.get("/dashboard/billing").text
    assert "on file" in billing_page
    # 1 domain × 1.00 + 2 IPs × 5.00 + 2 mailboxes × 2.00 = 15.00 USD
    assert "15.00 USD" in billing_page


def test_bad_first_orders_show_the_reason_and_change_nothing(
    browser: Browser, runtime: Runtime
) -> None:
    add_inventory(runtime)
    browser.sign_up("bad@example.com")
    browser.get("/dashboard/billing/checkout")
    browser.post("/dashboard/billing/checkout")
    browser.get("/dashboard/orders")
    for form, status in (
        ({"domain": "not a domain", "ip_count": "1", "mailboxes": ""}, 400),
        ({"domain": "ok-domain.test", "ip_count": "eleven", "mailboxes": ""}, 400),
        ({"domain": "ok-domain.test", "ip_count": "11", "mailboxes": ""}, 400),
        ({"domain": "ok-domain.test", "ip_count": "1", "mailboxes": "x@elsewhere.test"}, 400),
        ({"domain": "ok-domain.test", "ip_count": "1", "mode": "steal"}, 400),
    ):
        response = browser.post("/dashboard/orders/first", {"mode": "byo", **form})
        assert response.status_code == status, (form, response.text)
        assert 'class="error"' in response.text, form
    from adbtd.db.models import Order

    with runtime.db.transaction() as session:
        assert session.scalar(select(Order.id)) is None


def test_local_checkout_records_a_test_payment_method(browser: Browser, runtime: Runtime) -> None:
    browser.sign_up("pay@example.com")
    workspace_id = workspace_of(runtime, "pay@example.com")
    page = browser.get(f"/dashboard/billing/checkout?workspace={workspace_id}")
    assert "Save test payment method" in page.text
    browser.post(f"/dashboard/billing/checkout?workspace={workspace_id}")
    with runtime.db.transaction() as session:
        account = session.get(BillingAccount, workspace_id)
        assert account is not None
        assert account.payment_method_ref and account.payment_method_ref.startswith("pm_local_")


def test_security_headers_and_static_htmx(browser: Browser) -> None:
    page = browser.get("/dashboard/login")
    headers = page.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert 'src="/dashboard/static/htmx.min.js"' in page.text
    assert "https://" not in page.text.split("<body")[0]
    script = browser.client.get("/dashboard/static/htmx.min.js")
    assert script.status_code == 200 and "htmx" in script.text[:200]


def test_first_order_without_free_ips_says_so(browser: Browser) -> None:
    browser.sign_up("short@example.com")
    browser.get("/dashboard/billing/checkout")
    browser.post("/dashboard/billing/checkout")
    browser.get("/dashboard/orders")
    response = browser.post(
        "/dashboard/orders/first",
        {"domain": unique_domain(), "mode": "byo", "ip_count": "1", "mailboxes": "alice"},
    )
    assert response.status_code == 503
    assert "not enough free dedicated IPs" in response.text


def test_orders_page_polls_only_while_an_order_is_pending(
    browser: Browser, runtime: Runtime
) -> None:
    add_inventory(runtime)
    browser.sign_up("poll@example.com")
    browser.get("/dashboard/billing/checkout")
    browser.post("/dashboard/billing/checkout")
    browser.get("/dashboard/orders")
    assert 'hx-trigger="every 2s"' not in browser.get("/dashboard/orders").text
    browser.post(
        "/dashboard/orders/first",
        {"domain": unique_domain(), "mode": "byo", "ip_count": "1", "mailboxes": "alice"},
    )
    assert 'hx-trigger="every 2s"' in browser.get("/dashboard/orders").text
    provision(runtime)
    assert 'hx-trigger="every 2s"' not in browser.get("/dashboard/orders").text
