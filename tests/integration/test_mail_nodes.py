"""Several mail nodes: each address belongs to one node, a workspace lives on one node, and
each node's reconciler sees only what it serves."""

from __future__ import annotations

import contextlib
import imaplib
import os
import shutil
import smtplib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adbtd.db.models import DedicatedIp
from adbtd.mailnode.layout import NodeLayout
from adbtd.mailnode.node import MailNode
from adbtd.mailnode.state import NodeConfig, NodeState
from adbtd.runtime import Runtime
from adbtd.services import mailboxes
from adbtd.services.node_state import load_node_state
from adbtd.settings import Settings
from adbtd.workers.mailnode import DatabaseMailNode
from tests.conftest import Tenant
from tests.integration.conftest import MAIL_BINARIES, free_port, node_ip
from tests.integration.test_api_foundation import assert_envelope
from tests.support.mail_env import insecure_tls
from tests.support.resources import add_inventory, first_order, provision, snapshot


def nodes_of(runtime: Runtime, workspace_id: str) -> dict[str, str]:
    """address → node of what the workspace holds."""
    with runtime.db.transaction() as session:
        rows = session.execute(
            select(DedicatedIp.address, DedicatedIp.node).where(
                DedicatedIp.workspace_id == workspace_id
            )
        )
        return dict(rows.all())


def test_a_workspace_takes_the_roomiest_node_and_stays_on_it(
    client: TestClient, runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    add_inventory(runtime, "127.0.5.1-127.0.5.3", node="east")
    add_inventory(runtime, "127.0.6.1-127.0.6.4", node="west")
    first, second = make_tenant(), make_tenant()
    first_order(runtime, first, ips=2, emails=[])  # west has 4 free, east 3
    assert set(nodes_of(runtime, first.workspace_id).values()) == {"west"}
    first_order(runtime, second, ips=2, emails=[])  # east 3, west 2
    assert set(nodes_of(runtime, second.workspace_id).values()) == {"east"}

    # west has 2 left and east 1: the first workspace grows on west only.
    response = client.post("/api/v1/ips", headers=first.headers, json={"count": 2})
    assert response.status_code == 200, response.text
    provision(runtime)
    assert list(nodes_of(runtime, first.workspace_id).values()) == ["west"] * 4
    # The second's node has one left; two more would span nodes, so it is 503 and changes nothing.
    before = snapshot(runtime)
    assert_envelope(
        client.post("/api/v1/ips", headers=second.headers, json={"count": 2}),
        503,
        "inventory_unavailable",
    )
    assert snapshot(runtime) == before
    assert client.post("/api/v1/ips", headers=second.headers, json={"count": 1}).status_code == 200
    provision(runtime)
    assert list(nodes_of(runtime, second.workspace_id).values()) == ["east"] * 3


def test_a_first_order_never_spans_nodes(
    runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    add_inventory(runtime, "127.0.5.1-127.0.5.2", node="east")
    add_inventory(runtime, "127.0.6.1-127.0.6.2", node="west")
    tenant = make_tenant()
    with pytest.raises(Exception, match="not enough free dedicated IPs on any one mail node"):
        first_order(runtime, tenant, ips=3, emails=[])
    assert nodes_of(runtime, tenant.workspace_id) == {}
    first_order(runtime, tenant, ips=2, emails=[])
    assert set(nodes_of(runtime, tenant.workspace_id).values()) == {"east"}  # a tie: by name


def test_each_node_loads_only_what_it_serves(
    runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    add_inventory(runtime, "127.0.5.1", node="east")
    add_inventory(runtime, "127.0.6.1", node="west")
    east, west = make_tenant(), make_tenant()
    first_order(runtime, east, domain="east-shop.test", emails=["a@east-shop.test"])
    first_order(runtime, west, domain="west-shop.test", emails=["b@west-shop.test"])
    secret = runtime.settings.secret_key
    with runtime.db.transaction() as session:
        states = {
            node: load_node_state(session, node=node, secret_key=secret)
            for node in ("east", "west", "main")
        }
    assert states["east"].ips == ("127.0.5.1",)
    assert [d.name for d in states["east"].domains] == ["east-shop.test"]
    assert [(m.email, m.ip) for m in states["east"].mailboxes] == [
        ("a@east-shop.test", "127.0.5.1")
    ]
    assert states["west"].ips == ("127.0.6.1",)
    assert [d.name for d in states["west"].domains] == ["west-shop.test"]
    assert [m.email for m in states["west"].mailboxes] == ["b@west-shop.test"]
    assert states["main"].ips == () and states["main"].domains == ()
    assert states["main"].mailboxes == ()


def test_a_node_process_loads_its_own_node_and_helo_names(
    runtime: Runtime, settings_factory: Callable[..., Settings], make_tenant: Callable[..., Tenant]
) -> None:
    """``adbtd serve``/``mailnode run`` read ADBTD_NODE_NAME; a node with its own MX host
    says that name in HELO instead of ``mail.<domain>``."""
    add_inventory(runtime, "127.0.5.1", node="east")
    add_inventory(runtime, "127.0.6.1", node="west")
    first_order(runtime, make_tenant(), domain="east-shop.test", emails=[])
    first_order(runtime, make_tenant(), domain="west-shop.test", emails=[])
    states = {}
    for node in ("east", "west"):
        process = Runtime.from_settings(
            settings_factory(node_name=node, node_mx_hostnames="east=mx-east.node.test")
        )
        try:
            states[node] = DatabaseMailNode(process).load_state()
        finally:
            process.close()
    assert states["east"].ips == ("127.0.5.1",) and states["east"].ip_hostnames == ()
    assert states["west"].ips == ("127.0.6.1",)
    assert states["west"].ip_hostnames == (("127.0.6.1", "mail.west-shop.test"),)


@pytest.fixture
def two_nodes(runtime: Runtime) -> Iterator[dict[str, Node]]:
    """Nodes east and west as two real daemon sets fed from one database: the same ports,
    each bound to its own addresses; east relays what is not its own to west's MX."""
    missing = [b for b in MAIL_BINARIES if shutil.which(b) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and {', '.join(missing) or 'the mail daemons'}")
    ips = {"east": node_ip(70), "west": node_ip(71)}
    ports = {"submission_port": free_port(), "imap_port": free_port(), "smtp_port": free_port()}
    started: list[MailNode] = []
    nodes: dict[str, Node] = {}
    bases: list[Path] = []
    try:
        for name, ip in ips.items():
            base = Path(tempfile.mkdtemp(prefix=f"adbtd-node-{name}-"))
            base.chmod(0o755)
            bases.append(base)
            relay = f"{ips['west']}:{ports['smtp_port']}" if name == "east" else ""
            config = NodeConfig(
                base_dir=base,
                hostname=f"{name}.node.test",
                outbound_relay=relay,
                auth_penalty=False,
                require_safe_keys=False,
                **ports,
            )

            def state(node: str = name) -> NodeState:
                with runtime.db.transaction() as session:
                    return load_node_state(
                        session, node=node, secret_key=runtime.settings.secret_key
                    )

            mail_node = MailNode(state, config)
            mail_node.start(interval=3600)
            started.append(mail_node)
            nodes[name] = Node(ip, config, mail_node)
        yield nodes
    finally:
        for mail_node in started:
            mail_node.stop()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)


def test_two_nodes_serve_their_own_mailboxes_and_mail_crosses_between_them(
    runtime: Runtime, make_tenant: Callable[..., Tenant], two_nodes: dict[str, Node]
) -> None:
    east, west = two_nodes["east"], two_nodes["west"]
    add_inventory(runtime, east.ip, node="east")
    add_inventory(runtime, west.ip, node="west")
    first_order(runtime, make_tenant(), domain="east-shop.test", emails=["a@east-shop.test"])
    first_order(runtime, make_tenant(), domain="west-shop.test", emails=["b@west-shop.test"])
    with runtime.db.transaction() as session:
        secret = runtime.settings.secret_key
        password = {
            email: mailboxes.mailbox_password(session, email=email, secret_key=secret)
            for email in ("a@east-shop.test", "b@west-shop.test")
        }
    for node in (east, west):
        node.mail_node.reconcile_once()

    # Each node logs in only its own mailboxes, at its own address.
    assert imap_login(east, "a@east-shop.test", password["a@east-shop.test"]) == "OK"
    assert imap_login(west, "b@west-shop.test", password["b@west-shop.test"]) == "OK"
    assert imap_login(east, "b@west-shop.test", password["b@west-shop.test"]) == "refused"

    # a@ (east) writes to b@ (west): east signs it and hands it to west's MX.
    message = EmailMessage()
    message["From"], message["To"] = "a@east-shop.test", "b@west-shop.test"
    message["Subject"] = "across nodes"
    message.set_content("hello from the east\n")
    with smtplib.SMTP(east.ip, east.config.submission_port, timeout=10) as smtp:
        smtp.starttls(context=insecure_tls())
        smtp.login("a@east-shop.test", password["a@east-shop.test"])
        smtp.send_message(message)
    raw = wait_for_subject(west, "b@west-shop.test", password["b@west-shop.test"], "across nodes")
    assert b"DKIM-Signature:" in raw and b"d=east-shop.test" in raw


@dataclass(frozen=True)
class Node:
    ip: str
    config: NodeConfig
    mail_node: MailNode


def imap_login(node: Node, email: str, password: str) -> str:
    conn = imaplib.IMAP4_SSL(node.ip, node.config.imap_port, ssl_context=insecure_tls(), timeout=10)
    try:
        conn.login(email, password)
    except imaplib.IMAP4.error:
        return "refused"
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            conn.logout()
    return "OK"


def wait_for_subject(node: Node, email: str, password: str, subject: str) -> bytes:
    deadline = time.monotonic() + 20
    conn = imaplib.IMAP4_SSL(node.ip, node.config.imap_port, ssl_context=insecure_tls(), timeout=10)
    conn.login(email, password)
    try:
        while time.monotonic() < deadline:
            conn.select("INBOX", readonly=True)
            _, data = conn.uid("SEARCH", "SUBJECT", f'"{subject}"')
            for uid in (data[0] or b"").split():
                _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                if fetched and isinstance(fetched[0], tuple):
                    return bytes(fetched[0][1])
            time.sleep(0.1)
    finally:
        conn.logout()
    log = NodeLayout(node.config.base_dir).postfix_log
    raise AssertionError(f"{subject!r} never reached {email}:\n{log.read_text()[-3000:]}")
