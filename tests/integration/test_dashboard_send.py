"""From sign-up in a browser to a first message sent with the dashboard's key and read back.

Headless Chromium walks the dashboard (sign-up, test payment method, first order, API key,
mailbox password); the mail node the order configured then carries a message sent through the
API from alice to bob, and bob reads it through the API and over IMAP with the revealed password.
"""

from __future__ import annotations

import imaplib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from adbtd.mailnode.apply import Daemon
from adbtd.runtime import Runtime
from adbtd.services.node_state import load_node_state
from adbtd.settings import Settings
from tests.e2e.harness import (
    DESKTOP,
    STEP_TIMEOUT_MS,
    LiveServer,
    Shots,
    add_local_payment_method,
    chromium,
    create_key,
    free_port,
    place_first_order,
    reveal_password,
    sign_up,
    unique_email,
    wait_for_order,
)
from tests.integration.conftest import RunningNode
from tests.support.mail_env import insecure_tls, node_settings
from tests.support.resources import add_inventory, unique_domain

__all__ = ["chromium"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: the walk is about the browser and the node, not the engine."""
    target = tmp_path / "adbtd.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def live_server(
    settings_factory: Callable[..., Settings], mailnode: RunningNode
) -> Iterator[LiveServer]:
    port = free_port()
    settings = node_settings(settings_factory, mailnode, public_base_url=f"http://127.0.0.1:{port}")
    runtime = Runtime.from_settings(settings)
    add_inventory(runtime, f"{mailnode.ip(200)}-{mailnode.ip(201)}")
    server = LiveServer(runtime, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        runtime.close()


def apply_to_node(runtime: Runtime, node: RunningNode) -> None:
    """What the in-process reconciler of ``adbtd serve`` does when the order completes."""
    with runtime.db.transaction() as session:
        state = load_node_state(session, secret_key=runtime.settings.secret_key)
    if node.apply(state).changed:
        node.node.supervisor.reload([Daemon.POSTFIX])


def test_first_message_from_a_new_dashboard_user(
    chromium: Browser, live_server: LiveServer, mailnode: RunningNode
) -> None:
    base = live_server.url
    context = chromium.new_context(viewport=DESKTOP)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    shots = Shots("send-")
    sign_up(page, base, unique_email("send"))
    add_local_payment_method(page)
    domain = unique_domain("send")
    place_first_order(page, base, domain, 1, ["alice", "bob"])
    wait_for_order(page, base)
    apply_to_node(live_server.runtime, mailnode)
    token = create_key(page, base, "first send")
    bob_password = reveal_password(page, base, f"bob@{domain}")
    shots.take(page, "mailboxes")
    context.close()

    api = httpx.Client(
        base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    boxes = {b["email"]: b for b in api.get("/mailboxes").json()["data"]}
    alice, bob = boxes[f"alice@{domain}"], boxes[f"bob@{domain}"]
    assert alice["smtpHost"] == mailnode.ip(200)
    sent = api.post(
        f"/mailboxes/{alice['id']}/send",
        json={
            "to": bob["email"],
            "subject": "first send from adbtd",
            "text": "Hello from my own IP.",
        },
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["data"]["accepted"] == [bob["email"]]

    deadline = time.monotonic() + 20
    subjects: list[str] = []
    while time.monotonic() < deadline:
        listed = api.get(f"/mailboxes/{bob['id']}/messages")
        assert listed.status_code == 200, listed.text
        subjects = [m["subject"] for m in listed.json()["data"]["messages"]]
        if "first send from adbtd" in subjects:
            break
        time.sleep(0.2)
    assert "first send from adbtd" in subjects

    # The password the dashboard revealed is the one bob's own IMAP server accepts.
    imap = imaplib.IMAP4_SSL(
        bob["imapHost"], bob["imapPort"], ssl_context=insecure_tls(), timeout=10
    )
    try:
        assert imap.login(bob["email"], bob_password)[0] == "OK"
        assert imap.select("INBOX", readonly=True)[0] == "OK"
    finally:
        imap.logout()
    api.close()
