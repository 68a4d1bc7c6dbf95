"""Tenant boundaries on the real daemons: logins only on the tenant's own IPs, mail of removed
mailboxes deleted, outbound HELO per IP."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import time
from pathlib import Path

import pytest

from adbtd.mailnode.keys import hash_mailbox_password
from adbtd.mailnode.state import NodeDomain, NodeMailbox, NodeState
from tests.integration.conftest import HELO_IP, RunningNode, SmtpSink
from tests.integration.test_mailnode_daemons import (
    CLIENT_NAME,
    imap_login,
    imap_refuses,
    merge,
    message,
    submission,
    tenant_state,
)

pytestmark = pytest.mark.integration


def submission_accepts(
    node: RunningNode, ip: str, user: str, password: str, tls: ssl.SSLContext
) -> bool:
    with submission(node, ip, tls) as client:
        try:
            client.login(user, password)
        except smtplib.SMTPAuthenticationError:
            return False
    return True


def deliver(node: RunningNode, ip: str, rcpt: str, subject: str) -> None:
    """Inbound mail for a hosted address on the MX port, then wait until it is in the Maildir."""
    with smtplib.SMTP(ip, node.config.smtp_port, local_hostname=CLIENT_NAME) as inbound:
        inbound.send_message(message("someone@example.net", rcpt, subject))
    wait_for_files(node.maildir(rcpt) / "new")


def wait_for_files(directory: Path, timeout: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(directory.glob("*")) if directory.is_dir() else []
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"nothing arrived in {directory} within {timeout} s")


def inbox_count(node: RunningNode, ip: str, user: str, password: str, tls: ssl.SSLContext) -> int:
    client = imap_login(node, ip, user, password, tls)
    status, data = client.select("INBOX", readonly=True)
    client.logout()
    assert status == "OK"
    return int(data[0] or b"0")


def test_a_mailbox_logs_in_only_on_its_own_tenant_ips(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip_a, ip_b, ip_b2 = mailnode.ip(40), mailnode.ip(41), mailnode.ip(42)
    tenant_b = NodeState(
        ips=(ip_b, ip_b2),
        domains=(NodeDomain("iso-b.test", "sel", dkim_key, (ip_b, ip_b2)),),
        mailboxes=(NodeMailbox("ida@iso-b.test", hash_mailbox_password("ida-pw", cost=4), ip_b),),
    )
    mailnode.apply(merge(tenant_state("iso-a.test", ip_a, dkim_key, hal="hal-pw"), tenant_b))
    for ip in (ip_b, ip_b2):  # its own IP and its workspace's other IP
        imap_login(mailnode, ip, "ida@iso-b.test", "ida-pw", client_tls).logout()
        assert submission_accepts(mailnode, ip, "ida@iso-b.test", "ida-pw", client_tls)
    # the right password on another tenant's IP is refused, on both protocols
    assert imap_refuses(mailnode, ip_a, "ida@iso-b.test", "ida-pw", client_tls)
    assert not submission_accepts(mailnode, ip_a, "ida@iso-b.test", "ida-pw", client_tls)
    assert imap_refuses(mailnode, ip_b, "hal@iso-a.test", "hal-pw", client_tls)
    assert not submission_accepts(mailnode, ip_b2, "hal@iso-a.test", "hal-pw", client_tls)
    started = time.monotonic()  # the refusals cost no auth penalty in the test node
    imap_login(mailnode, ip_a, "hal@iso-a.test", "hal-pw", client_tls).logout()
    imap_login(mailnode, ip_b, "ida@iso-b.test", "ida-pw", client_tls).logout()
    assert time.monotonic() - started < 1.0


def test_mail_of_removed_mailboxes_and_domains_is_deleted(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip_a, ip_b = mailnode.ip(43), mailnode.ip(44)
    tenant_a = tenant_state("rm-a.test", ip_a, dkim_key, uma="uma-pw", vic="vic-pw")
    tenant_b = tenant_state("rm-b.test", ip_b, dkim_key, wes="wes-pw")
    mailnode.apply(merge(tenant_a, tenant_b))
    for rcpt, ip in (("uma@rm-a.test", ip_a), ("vic@rm-a.test", ip_a), ("wes@rm-b.test", ip_b)):
        deliver(mailnode, ip, rcpt, f"before-{rcpt.split('@')[0]}")
    uma_home = mailnode.maildir("uma@rm-a.test").parent
    session = imap_login(mailnode, ip_a, "uma@rm-a.test", "uma-pw", client_tls)
    session.select("INBOX")

    changes = mailnode.apply(
        merge(tenant_state("rm-a.test", ip_a, dkim_key, vic="vic-pw"), tenant_b)
    )
    assert changes.removed_mail == ("rm-a.test/uma",)
    assert not uma_home.exists()
    with pytest.raises((imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError)):
        session.noop()  # its open session was ended, so it cannot write the Maildir back
    assert imap_refuses(mailnode, ip_a, "uma@rm-a.test", "uma-pw", client_tls)
    assert not uma_home.exists()  # the refused login did not re-create it
    assert inbox_count(mailnode, ip_a, "vic@rm-a.test", "vic-pw", client_tls) == 1
    assert inbox_count(mailnode, ip_b, "wes@rm-b.test", "wes-pw", client_tls) == 1

    # the whole of rm-b.test goes (its workspace keeps the IP); uma comes back
    changes = mailnode.apply(merge(tenant_a, NodeState(ips=(ip_b,))))
    assert changes.removed_mail == ("rm-b.test/wes",)
    assert not (mailnode.config.base_dir / "mail" / "rm-b.test").exists()
    assert imap_refuses(mailnode, ip_b, "wes@rm-b.test", "wes-pw", client_tls)
    assert inbox_count(mailnode, ip_a, "uma@rm-a.test", "uma-pw", client_tls) == 0
    assert inbox_count(mailnode, ip_a, "vic@rm-a.test", "vic-pw", client_tls) == 1


def test_a_failed_state_read_removes_no_mail(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(45)
    state = tenant_state("keep.test", ip, dkim_key, xan="xan-pw")
    mailnode.apply(state)
    deliver(mailnode, ip, "xan@keep.test", "kept")
    reconciler = mailnode.node.reconciler
    provider = reconciler.state_provider

    def unreadable() -> NodeState:
        raise RuntimeError("database down")

    reconciler.state_provider = unreadable
    try:
        with pytest.raises(RuntimeError):
            reconciler.reconcile_once()
    finally:
        reconciler.state_provider = provider
    assert inbox_count(mailnode, ip, "xan@keep.test", "xan-pw", client_tls) == 1


def test_outbound_helo_is_the_name_configured_for_the_sending_ip(
    mailnode: RunningNode, smtp_sink: SmtpSink, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    named, plain = mailnode.ip(HELO_IP), mailnode.ip(46)
    mailnode.apply(
        merge(
            tenant_state("helo-a.test", named, dkim_key, yul="yul-pw"),
            tenant_state("helo-b.test", plain, dkim_key, zia="zia-pw"),
        )
    )
    for sender, ip, expected in (
        ("yul@helo-a.test", named, "out31.node.test"),
        ("zia@helo-b.test", plain, mailnode.config.hostname),
    ):
        rcpt = f"helo-{sender.split('@')[0]}@example.net"
        with submission(mailnode, ip, client_tls) as client:
            client.login(sender, f"{sender.split('@')[0]}-pw")
            client.send_message(message(sender, rcpt, f"helo-{ip}"))
        arrived = smtp_sink.wait_for(rcpt)
        assert (arrived.peer, arrived.helo) == (ip, expected)
