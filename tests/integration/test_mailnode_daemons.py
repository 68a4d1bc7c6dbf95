"""The mail node against the real Postfix, Dovecot and OpenDKIM: logins, delivery, signing,
tenant isolation, reconcile effects and supervision."""

from __future__ import annotations

import imaplib
import os
import signal
import smtplib
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage

import dkim
import pytest

from adbtd.mailnode.apply import Daemon
from adbtd.mailnode.keys import dkim_public_record, hash_mailbox_password
from adbtd.mailnode.state import NodeDomain, NodeMailbox, NodeState
from tests.integration.conftest import RunningNode, SmtpSink

pytestmark = pytest.mark.integration

CLIENT_NAME = "client.test"  # smtplib would otherwise call getfqdn() (a DNS lookup)


def tenant_state(domain: str, ip: str, key: str, **passwords: str) -> NodeState:
    """One domain on one IP with mailboxes ``local=password``."""
    mailboxes = tuple(
        NodeMailbox(f"{local}@{domain}", hash_mailbox_password(pw, cost=4), ip)
        for local, pw in sorted(passwords.items())
    )
    return NodeState(
        ips=(ip,), domains=(NodeDomain(domain, "sel", key, (ip,)),), mailboxes=mailboxes
    )


def merge(*states: NodeState) -> NodeState:
    return NodeState(
        ips=tuple(ip for s in states for ip in s.ips),
        domains=tuple(d for s in states for d in s.domains),
        mailboxes=tuple(m for s in states for m in s.mailboxes),
    )


def dkim_dns(key: str) -> Callable[..., bytes]:
    """dkimpy's DNS hook answering every selector with this key's public record."""
    record = dkim_public_record(key).encode()

    def lookup(_name: bytes, timeout: int = 5) -> bytes:
        return record

    return lookup


def submission(node: RunningNode, ip: str, tls: ssl.SSLContext) -> smtplib.SMTP:
    client = smtplib.SMTP(ip, node.config.submission_port, local_hostname=CLIENT_NAME, timeout=10)
    client.starttls(context=tls)
    client.ehlo(CLIENT_NAME)
    return client


def message(sender: str, rcpt: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
    msg["Message-ID"] = f"<{subject}@{sender.split('@')[1]}>"
    msg.set_content("hello from the node tests\n")
    return msg


def imap_login(
    node: RunningNode, ip: str, user: str, password: str, tls: ssl.SSLContext
) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(ip, node.config.imap_port, ssl_context=tls, timeout=10)
    client.login(user, password)
    return client


def imap_refuses(node: RunningNode, ip: str, user: str, password: str, tls: ssl.SSLContext) -> bool:
    try:
        imap_login(node, ip, user, password, tls).logout()
    except imaplib.IMAP4.error:
        return True
    return False


def test_submission_needs_starttls_before_auth_then_logs_in(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(11)
    mailnode.apply(tenant_state("sub.test", ip, dkim_key, alice="alice-pw"))
    plain = smtplib.SMTP(ip, mailnode.config.submission_port, local_hostname=CLIENT_NAME)
    plain.ehlo(CLIENT_NAME)
    assert not plain.has_extn("auth")
    code, _ = plain.docmd("AUTH", "PLAIN AGFsaWNlQHN1Yi50ZXN0AGFsaWNlLXB3")
    assert code in (503, 530, 538)
    plain.quit()
    client = submission(mailnode, ip, client_tls)
    assert client.has_extn("auth")
    code, _ = client.login("alice@sub.test", "alice-pw")
    assert code == 235
    client.quit()


def test_imap_implicit_tls_login_at_the_mailbox_ip(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(12)
    mailnode.apply(tenant_state("imap.test", ip, dkim_key, bob="bob-pw"))
    client = imap_login(mailnode, ip, "bob@imap.test", "bob-pw", client_tls)
    status, data = client.select("INBOX")
    assert status == "OK"
    assert data == [b"0"]
    client.logout()


def test_mail_between_hosted_mailboxes_is_delivered_and_readable(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(13)
    mailnode.apply(tenant_state("local.test", ip, dkim_key, ann="ann-pw", ben="ben-pw"))
    with submission(mailnode, ip, client_tls) as client:
        client.login("ann@local.test", "ann-pw")
        client.send_message(message("ann@local.test", "ben@local.test", "lmtp-check"))
    deadline = time.monotonic() + 10
    found: list[bytes] = []
    while time.monotonic() < deadline and not found:
        box = imap_login(mailnode, ip, "ben@local.test", "ben-pw", client_tls)
        box.select("INBOX", readonly=True)
        _, data = box.search(None, "SUBJECT", "lmtp-check")
        found = data[0].split()
        box.logout()
        time.sleep(0.05)
    assert len(found) == 1


def test_first_message_of_a_new_domain_routes_hosted_and_outside_recipients(
    mailnode: RunningNode, smtp_sink: SmtpSink, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    """Sent right after the reconcile that adds the domain: the hosted copy goes over LMTP,
    only the outside one to the relay (running Postfix processes must not use the old maps)."""
    ip = mailnode.ip(16)
    stamp = f"{os.getpid()}-{time.monotonic_ns() % 10**6}"
    warm = tenant_state(f"warm-{stamp}.test", ip, dkim_key, gus="gus-pw")
    mailnode.apply(warm)
    with submission(mailnode, ip, client_tls) as client:  # Postfix's processes load the maps
        client.login(f"gus@warm-{stamp}.test", "gus-pw")
        client.send_message(message(f"gus@warm-{stamp}.test", f"w-{stamp}@example.net", "w"))
    smtp_sink.wait_for(f"w-{stamp}@example.net")
    domain = f"fresh-{stamp}.test"
    mailnode.apply(merge(warm, tenant_state(domain, ip, dkim_key, eve="eve-pw", fay="fay-pw")))
    outside = f"far-{domain.split('.')[0]}@example.net"
    with submission(mailnode, ip, client_tls) as client:
        client.login(f"eve@{domain}", "eve-pw")
        msg = message(f"eve@{domain}", f"fay@{domain}", "mixed-first")
        client.send_message(msg, to_addrs=[f"fay@{domain}", outside])
    relayed = smtp_sink.wait_for(outside)
    assert relayed.rcpt_tos == [outside]
    deadline = time.monotonic() + 10
    found: list[bytes] = []
    while time.monotonic() < deadline and not found:
        box = imap_login(mailnode, ip, f"fay@{domain}", "fay-pw", client_tls)
        box.select("INBOX", readonly=True)
        found = box.search(None, "SUBJECT", "mixed-first")[1][0].split()
        box.logout()
        time.sleep(0.05)
    assert len(found) == 1


def test_outbound_mail_leaves_from_the_sender_ip_dkim_signed(
    mailnode: RunningNode, smtp_sink: SmtpSink, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip_a, ip_b = mailnode.ip(14), mailnode.ip(15)
    mailnode.apply(
        merge(
            tenant_state("out-a.test", ip_a, dkim_key, carl="carl-pw"),
            tenant_state("out-b.test", ip_b, dkim_key, dora="dora-pw"),
        )
    )
    for sender, password, ip in (
        ("carl@out-a.test", "carl-pw", ip_a),
        ("dora@out-b.test", "dora-pw", ip_b),
    ):
        rcpt = f"rcpt-{sender.split('@')[0]}@example.net"
        with submission(mailnode, ip, client_tls) as client:
            client.login(sender, password)
            client.send_message(message(sender, rcpt, f"out-{ip}"))
        arrived = smtp_sink.wait_for(rcpt)
        assert arrived.peer == ip
        assert b"DKIM-Signature:" in arrived.content
        assert dkim.verify(arrived.content, dnsfunc=dkim_dns(dkim_key))


def test_login_sending_as_an_address_it_does_not_own_is_refused(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(16)
    mailnode.apply(tenant_state("own.test", ip, dkim_key, eve="eve-pw", fay="fay-pw"))
    with submission(mailnode, ip, client_tls) as client:
        client.login("eve@own.test", "eve-pw")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("fay@own.test", ["x@example.net"], b"Subject: x\r\n\r\nx\r\n")
    code, text = refused.value.recipients["x@example.net"]
    assert code == 553
    assert b"not owned by user" in text


def test_unauthenticated_relay_is_refused(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(17)
    mailnode.apply(tenant_state("relay.test", ip, dkim_key, gus="gus-pw"))
    with smtplib.SMTP(ip, mailnode.config.smtp_port, local_hostname=CLIENT_NAME) as inbound:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            inbound.sendmail("gus@relay.test", ["x@example.net"], b"Subject: x\r\n\r\nx\r\n")
        assert refused.value.recipients["x@example.net"][0] == 554
    with submission(mailnode, ip, client_tls) as client:  # TLS but no AUTH
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail("gus@relay.test", ["x@example.net"], b"Subject: x\r\n\r\nx\r\n")
        assert refused.value.recipients["x@example.net"][0] == 554


def test_other_tenant_cannot_log_in_with_a_wrong_password(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip_a, ip_b = mailnode.ip(18), mailnode.ip(19)
    mailnode.apply(
        merge(
            tenant_state("ten-a.test", ip_a, dkim_key, hal="hal-pw"),
            tenant_state("ten-b.test", ip_b, dkim_key, ida="ida-pw"),
        )
    )
    assert imap_refuses(mailnode, ip_a, "ida@ten-b.test", "hal-pw", client_tls)
    with (
        submission(mailnode, ip_a, client_tls) as client,
        pytest.raises(smtplib.SMTPAuthenticationError),
    ):
        client.login("ida@ten-b.test", "wrong")
    started = time.monotonic()
    imap_login(mailnode, ip_a, "hal@ten-a.test", "hal-pw", client_tls).logout()
    assert time.monotonic() - started < 1.0  # no auth penalty in the test node


def test_removed_mailbox_cannot_log_in(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(20)
    mailnode.apply(tenant_state("gone.test", ip, dkim_key, jo="jo-pw", kim="kim-pw"))
    imap_login(mailnode, ip, "jo@gone.test", "jo-pw", client_tls).logout()
    mailnode.apply(tenant_state("gone.test", ip, dkim_key, kim="kim-pw"))
    assert imap_refuses(mailnode, ip, "jo@gone.test", "jo-pw", client_tls)
    with (
        submission(mailnode, ip, client_tls) as client,
        pytest.raises(smtplib.SMTPAuthenticationError),
    ):
        client.login("jo@gone.test", "jo-pw")


def test_password_changes_take_effect_at_once_even_within_one_second(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(21)
    mailnode.apply(tenant_state("pw.test", ip, dkim_key, lee="password-0"))
    imap_login(mailnode, ip, "lee@pw.test", "password-0", client_tls).logout()
    for new in ("password-1", "password-2"):  # same length, same second
        changes = mailnode.apply(tenant_state("pw.test", ip, dkim_key, lee=new))
        assert changes.written == (f"dovecot/passwd.d/{ip}",)
        imap_login(mailnode, ip, "lee@pw.test", new, client_tls).logout()
    assert imap_refuses(mailnode, ip, "lee@pw.test", "password-1", client_tls)


def test_a_daemon_that_dies_is_restarted(
    mailnode: RunningNode, smtp_sink: SmtpSink, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(22)
    mailnode.apply(tenant_state("phoenix.test", ip, dkim_key, max="max-pw"))
    supervisor = mailnode.node.supervisor
    old_pid = supervisor.pid(Daemon.OPENDKIM)
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = supervisor.pid(Daemon.OPENDKIM)
        if pid not in (None, old_pid) and mailnode.node.supervisor.layout.opendkim_socket.exists():
            break
        time.sleep(0.05)
    assert supervisor.pid(Daemon.OPENDKIM) not in (None, old_pid)
    with submission(mailnode, ip, client_tls) as client:
        client.login("max@phoenix.test", "max-pw")
        client.send_message(message("max@phoenix.test", "after-restart@example.net", "again"))
    arrived = smtp_sink.wait_for("after-restart@example.net")
    assert b"DKIM-Signature:" in arrived.content


def test_notify_applies_a_change_within_one_second(
    mailnode: RunningNode, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    ip = mailnode.ip(23)
    mailnode.apply(tenant_state("notify.test", ip, dkim_key, ned="ned-pw"))
    mailnode.set_state(tenant_state("notify.test", ip, dkim_key, ned="ned-pw", ola="ola-pw"))
    started = time.monotonic()
    mailnode.node.notify()
    while imap_refuses(mailnode, ip, "ola@notify.test", "ola-pw", client_tls):
        assert time.monotonic() - started < 1.0, "notify() took longer than 1 s"
        time.sleep(0.02)


def test_another_tenants_change_keeps_open_sessions_working(
    mailnode: RunningNode, smtp_sink: SmtpSink, dkim_key: str, client_tls: ssl.SSLContext
) -> None:
    """A new tenant means a new IP: new listeners, Postfix and Dovecot reloaded. Sessions of a
    tenant already connected go on (a reload is graceful) and keep working afterwards."""
    ip = mailnode.ip(24)
    settled = tenant_state("settled.test", ip, dkim_key, sam="sam-pw")
    mailnode.apply(settled)
    reader = imap_login(mailnode, ip, "sam@settled.test", "sam-pw", client_tls)
    reader.select("INBOX")
    sender = submission(mailnode, ip, client_tls)
    sender.login("sam@settled.test", "sam-pw")
    newcomer = tenant_state("newcomer.test", mailnode.ip(25), dkim_key, nia="nia-pw")
    changes = mailnode.apply(merge(settled, newcomer))
    assert {Daemon.POSTFIX, Daemon.DOVECOT} <= changes.reload
    assert reader.noop()[0] == "OK"
    assert reader.select("INBOX")[0] == "OK"
    sender.send_message(message("sam@settled.test", "kept@example.net", "kept-session"))
    sender.quit()
    reader.logout()
    assert b"kept-session" in smtp_sink.wait_for("kept@example.net").content
    imap_login(mailnode, mailnode.ip(25), "nia@newcomer.test", "nia-pw", client_tls).logout()
