"""Browser-test harness: the whole HTTP app on a loopback port, Debian's Chromium driven by
Playwright, and the steps a new user takes in the dashboard.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium`` (installed by
``scripts/install-system.sh --test``) through ``executable_path``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from adbtd.api.app import create_app
from adbtd.runtime import Runtime
from adbtd.workers.orders import OrderWorker

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("ADBTD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery staple"
STEP_TIMEOUT_MS = 15_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """``create_app`` under uvicorn in a thread, with the order worker running beside it."""

    runtime: Runtime
    port: int
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    worker: OrderWorker | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.worker = OrderWorker(self.runtime, poll_seconds=0.2)
        self.runtime.order_placed = self.worker.wake
        self.worker.start()
        config = uvicorn.Config(
            create_app(self.runtime),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.worker is not None:
            self.worker.stop()


class _SharedChromium:
    """One Playwright and one browser per process, however many modules use the fixture.

    The fixture is imported by ``tests/e2e`` and by integration tests, which makes two session
    fixtures; the sync API allows only one Playwright per thread, so they share this one.
    """

    def __init__(self) -> None:
        self.users = 0
        self.playwright: Playwright | None = None
        self.browser: Browser | None = None

    def acquire(self) -> Browser:
        if self.browser is None:
            self.playwright = sync_playwright().start()
            self.browser = self.playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS
            )
        self.users += 1
        return self.browser

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self.browser is not None and self.playwright is not None:
            self.browser.close()
            self.playwright.stop()
            self.browser = self.playwright = None


_SHARED = _SharedChromium()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium; skipped when it is not installed."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (scripts/install-system.sh --test installs it)")
    browser = _SHARED.acquire()
    try:
        yield browser
    finally:
        _SHARED.release()


@dataclass
class Shots:
    """Screenshots of each page at desktop and phone width under ``test-artifacts/``."""

    prefix: str
    taken: list[Path] = field(default_factory=list)

    def take(self, page: Page, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.prefix}{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


def unique_email(stem: str = "user") -> str:
    return f"{stem}-{secrets.token_hex(3)}@example.com"


def sign_up(page: Page, base: str, email: str, workspace: str = "Acme Mail") -> None:
    page.goto(f"{base}/dashboard/signup")
    page.fill("input[name=workspace_name]", workspace)
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Create account')")
    page.wait_for_selector("text=Welcome! Your workspace is ready.")


def add_local_payment_method(page: Page) -> None:
    page.click("a.button:has-text('Add a payment method')")
    page.wait_for_selector("text=local billing provider")
    page.click("button:has-text('Save test payment method')")
    page.wait_for_selector("text=Payment method saved")


def place_first_order(page: Page, base: str, domain: str, ips: int, names: list[str]) -> None:
    page.goto(f"{base}/dashboard/orders")
    page.fill("input[name=domain]", domain)
    page.check("input[name=mode][value=byo]")
    page.fill("input[name=ip_count]", str(ips))
    page.fill("textarea[name=mailboxes]", "\n".join(names))
    page.click("button:has-text('Place order')")
    page.wait_for_selector("text=Order placed.")


def wait_for_order(page: Page, base: str, timeout: float = 30.0) -> None:
    """Stay on the orders page: htmx polls it until the order shows as completed."""
    if "/dashboard/orders" not in page.url:
        page.goto(f"{base}/dashboard/orders")
    page.wait_for_selector("#orders-list .badge.s-completed", timeout=timeout * 1000)
    assert "failed" not in page.inner_text("#orders-list")


def create_key(page: Page, base: str, name: str) -> str:
    """Create a key and read its plaintext from the one page that shows it."""
    page.goto(f"{base}/dashboard/api-keys")
    page.fill("input[name=name]", name)
    page.click("button:has-text('Create key')")
    token = page.inner_text("#new-key").strip()
    assert re.fullmatch(r"adbtd_live_[A-Za-z0-9_-]{43}", token), token
    return str(token)


def reveal_password(page: Page, base: str, email: str) -> str:
    """Click "Reveal password" on a mailbox card; htmx swaps the plaintext in."""
    page.goto(f"{base}/dashboard/mailboxes")
    card = page.locator("section.mailbox", has_text=email)
    assert "password" not in card.locator("dd code.secret").all_inner_texts()
    card.locator("button:has-text('Reveal password')").click()
    secret = card.locator("code.secret")
    secret.wait_for()
    return str(secret.inner_text().strip())


def with_phone_copy(
    browser: Browser, desktop_context: BrowserContext, visit: Callable[[Page], None]
) -> None:
    """Open a phone-sized context with the same cookies and run ``visit`` in it."""
    state = desktop_context.storage_state()
    phone = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, storage_state=state
    )
    phone.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        visit(phone.new_page())
    finally:
        phone.close()
