"""The SMTP and IMAP pools against the real node: reuse, keys, caps, expiry, health, retry."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AiosmtpdSmtp
from aiosmtpd.smtp import AuthResult
from sqlalchemy import update

from adbtd.adapters.imap_pool import ImapPool
from adbtd.adapters.pool import ClientTls, Login, PoolBusy, PoolLimits
from adbtd.adapters.smtp_pool import Envelope, SmtpPool
from adbtd.db.models import Mailbox
from adbtd.errors import ImapFailure, SmtpFailure
from adbtd.mailnode.keys import hash_mailbox_password
from adbtd.mailnode.tls import tls_paths
from adbtd.runtime import Runtime
from adbtd.services.mailboxes import PASSWORD_PURPOSE
from adbtd.services.message_cache import MessageKey
from adbtd.services.node_state import load_node_state
from adbtd.services.secretbox import SecretBox
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.integration.conftest import RunningNode, free_port
from tests.support.mail_env import Box, MailEnv, node_settings, provision_mail

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], mailnode: RunningNode) -> Settings:
    return node_settings(settings_factory, mailnode)


@pytest.fixture
def env(runtime: Runtime, tenant: Tenant, mailnode: RunningNode, dkim_key: str) -> MailEnv:
    return provision_mail(runtime, tenant, mailnode, dkim_key)


@pytest.fixture
def tls(mailnode: RunningNode) -> ClientTls:
    return ClientTls("pinned", tls_paths(mailnode.config)[0])


def imap_login(env: MailEnv, box: Box, password: str | None = None) -> Login:
    port = env.node.config.imap_port
    return Login(box.id, env.ip, port, box.email, password or box.password)


def smtp_login(env: MailEnv, box: Box) -> Login:
    return Login(box.id, env.ip, env.node.config.submission_port, box.email, box.password)


def message(env: MailEnv, subject: str) -> Envelope:
    data = (
        f"From: {env.alice.email}\r\nTo: {env.bob.email}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@{env.domain}>\r\n\r\nbody\r\n"
    ).encode()
    return Envelope(env.alice.email, (env.bob.email,), data)


def drop_idle(pool: ImapPool | SmtpPool) -> None:
    """Cut every idle connection at the socket, as a server restart or NAT timeout would."""
    for queue in pool.pool._idle.values():
        for entry in queue:
            entry.conn.sock.shutdown(socket.SHUT_RDWR)


def test_connections_are_warm_and_keyed_per_mailbox(env: MailEnv, tls: ClientTls) -> None:
    pool = ImapPool(tls=tls)
    try:
        for _ in range(3):
            pool.list_page(imap_login(env, env.alice), "INBOX", limit=5, before=None)
            pool.list_page(imap_login(env, env.bob), "INBOX", limit=5, before=None)
        assert pool.pool.stats() == {"open": 2, "idle": 2, "busy": 0}
        assert pool.pool.open_count(env.alice.id) == 1
        assert pool.pool.open_count(env.bob.id) == 1
        bob_as_alice = Login(env.alice.id, env.ip, env.node.config.imap_port, env.bob.email, "x")
        assert pool.pool.key(bob_as_alice) != pool.pool.key(imap_login(env, env.alice))
    finally:
        pool.close()
    assert pool.pool.stats()["open"] == 0


def test_password_change_opens_a_new_connection_and_evict_closes(
    env: MailEnv, tls: ClientTls, dkim_key: str
) -> None:
    pool = ImapPool(tls=tls)
    try:
        old = imap_login(env, env.bob)
        pool.list_page(old, "INBOX", limit=1, before=None)
        new_password = "changed-" + env.bob.password
        with env.runtime.db.transaction() as session:
            session.execute(
                update(Mailbox)
                .where(Mailbox.id == env.bob.id)
                .values(password_hash=hash_mailbox_password(new_password, cost=4))
            )
        with env.runtime.db.transaction() as session:
            env.node.apply(load_node_state(session, secret_key=env.runtime.settings.secret_key))
        new = imap_login(env, env.bob, new_password)
        assert pool.pool.key(new) != pool.pool.key(old)
        pool.list_page(new, "INBOX", limit=1, before=None)
        assert pool.pool.open_count(env.bob.id) == 2  # the old one is never handed out again
        assert pool.evict(env.bob.id) == 2
        assert pool.pool.open_count(env.bob.id) == 0
        with pytest.raises(ImapFailure):  # the old password no longer logs in
            pool.list_page(old, "INBOX", limit=1, before=None)
    finally:
        pool.close()


def test_runtime_evict_mailbox_closes_both_protocols_and_drops_cached_mail(
    env: MailEnv,
) -> None:
    rt = env.runtime
    rt.smtp_pool.submit(smtp_login(env, env.alice), message(env, "evict-me"))
    rt.imap_pool.list_page(imap_login(env, env.alice), "INBOX", limit=1, before=None)
    assert rt.smtp_pool.pool.open_count(env.alice.id) == 1
    assert rt.imap_pool.pool.open_count(env.alice.id) == 1
    assert rt.message_summaries is not None and rt.message_details is not None
    cached = MessageKey(env.alice.id, "INBOX", 1, 1)
    rt.message_summaries.put(cached, "summary", 10)  # type: ignore[arg-type]
    rt.message_details.put(cached, "detail", 10)  # type: ignore[arg-type]
    rt.evict_mailbox(env.alice.id)
    assert rt.smtp_pool.pool.open_count(env.alice.id) == 0
    assert rt.imap_pool.pool.open_count(env.alice.id) == 0
    assert rt.message_summaries.get(cached) is None
    assert rt.message_details.get(cached) is None


def test_a_busy_connection_of_an_evicted_mailbox_is_closed_on_return(
    env: MailEnv, tls: ClientTls
) -> None:
    pool = ImapPool(tls=tls)
    try:
        lease = pool.pool.acquire(imap_login(env, env.bob))
        assert pool.evict(env.bob.id) == 0
        pool.pool.release(lease, keep=True)
        assert pool.pool.stats()["open"] == 0
        assert lease.conn.state == "LOGOUT"
    finally:
        pool.close()


def test_idle_connections_expire_through_the_janitor(env: MailEnv, tls: ClientTls) -> None:
    pool = SmtpPool(tls=tls, local_hostname="api.test", limits=PoolLimits(idle_timeout=0.3))
    try:
        pool.submit(smtp_login(env, env.alice), message(env, "expire"))
        assert pool.pool.stats()["open"] == 1
        deadline = time.monotonic() + 5
        while pool.pool.stats()["open"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.pool.stats()["open"] == 0
    finally:
        pool.close()


def test_dead_idle_connection_fails_the_health_check(env: MailEnv, tls: ClientTls) -> None:
    always = PoolLimits(check_after=0.0)
    imap = ImapPool(tls=tls, limits=always)
    smtp = SmtpPool(tls=tls, local_hostname="api.test", limits=always)
    try:
        imap.list_page(imap_login(env, env.bob), "INBOX", limit=1, before=None)
        smtp.submit(smtp_login(env, env.alice), message(env, "health-1"))
        old_imap = next(iter(imap.pool._idle.values()))[0].conn
        drop_idle(imap)
        drop_idle(smtp)
        imap.list_page(imap_login(env, env.bob), "INBOX", limit=1, before=None)
        result = smtp.submit(smtp_login(env, env.alice), message(env, "health-2"))
        assert result.response.startswith("250 2.0.0 Ok: queued as ")
        assert next(iter(imap.pool._idle.values()))[0].conn is not old_imap
        assert imap.pool.stats()["open"] == 1 and smtp.pool.stats()["open"] == 1
    finally:
        imap.close()
        smtp.close()


def test_dropped_connection_is_retried_once_on_a_fresh_one(env: MailEnv, tls: ClientTls) -> None:
    no_checks = PoolLimits(check_after=1e9)  # skip NOOP, so the operation itself hits the drop
    imap = ImapPool(tls=tls, limits=no_checks)
    smtp = SmtpPool(tls=tls, local_hostname="api.test", limits=no_checks)
    try:
        uid = env.append(env.bob, b"Subject: retry\r\n\r\nx\r\n")
        imap.list_page(imap_login(env, env.bob), "INBOX", limit=1, before=None)
        smtp.submit(smtp_login(env, env.alice), message(env, "retry-1"))
        drop_idle(imap)
        drop_idle(smtp)
        page = imap.list_page(imap_login(env, env.bob), "INBOX", limit=10, before=None)
        assert uid in [item.uid for item in page.items]  # "retry-1" may have arrived too
        smtp.submit(smtp_login(env, env.alice), message(env, "retry-2"))
        env.wait_for(env.bob, lambda raw: b"<retry-2@" in raw)
        assert imap.pool.stats()["open"] == 1 and smtp.pool.stats()["open"] == 1
    finally:
        imap.close()
        smtp.close()


def test_per_mailbox_cap_waits_then_gives_up(env: MailEnv, tls: ClientTls) -> None:
    limits = PoolLimits(max_per_key=2, max_total=10, acquire_timeout=0.3)
    pool = ImapPool(tls=tls, limits=limits)
    try:
        login = imap_login(env, env.bob)
        leases = [pool.pool.acquire(login), pool.pool.acquire(login)]
        started = time.monotonic()
        with pytest.raises(PoolBusy):
            pool.pool.acquire(login)
        assert time.monotonic() - started >= 0.3
        pool.pool.acquire(imap_login(env, env.alice))  # another mailbox is not blocked
        threading.Timer(0.1, pool.pool.release, args=(leases[0],), kwargs={"keep": True}).start()
        third = pool.pool.acquire(login)  # waits for the release
        assert third.conn is leases[0].conn
    finally:
        pool.close()


def test_total_cap_closes_another_mailbox_idle_connection(env: MailEnv, tls: ClientTls) -> None:
    pool = ImapPool(tls=tls, limits=PoolLimits(max_per_key=2, max_total=1, acquire_timeout=0.3))
    try:
        pool.list_page(imap_login(env, env.alice), "INBOX", limit=1, before=None)
        pool.list_page(imap_login(env, env.bob), "INBOX", limit=1, before=None)
        assert pool.pool.open_count(env.alice.id) == 0
        assert pool.pool.open_count(env.bob.id) == 1
        lease = pool.pool.acquire(imap_login(env, env.bob))
        with pytest.raises(ImapFailure, match="no imap connection free"):
            pool.list_page(imap_login(env, env.alice), "INBOX", limit=1, before=None)
        pool.pool.release(lease, keep=True)
    finally:
        pool.close()


def test_concurrent_requests_stay_within_the_caps(env: MailEnv, tls: ClientTls) -> None:
    pool = SmtpPool(tls=tls, local_hostname="api.test", limits=PoolLimits(max_per_key=2))
    peak = 0
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        nonlocal peak
        try:
            for i in range(3):
                pool.submit(smtp_login(env, env.alice), message(env, f"c{n}-{i}"))
                peak = max(peak, pool.pool.stats()["open"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert 1 <= peak <= 2
    finally:
        pool.close()


def test_failures_map_to_the_protocol_errors(env: MailEnv, tls: ClientTls) -> None:
    smtp = SmtpPool(tls=tls, local_hostname="api.test")
    imap = ImapPool(tls=tls)
    try:
        with pytest.raises(SmtpFailure, match="login"):
            smtp.submit(
                Login(
                    env.alice.id, env.ip, env.node.config.submission_port, env.alice.email, "wrong"
                ),
                message(env, "x"),
            )
        closed_port = socket.socket()
        closed_port.bind((env.ip, 0))
        port = closed_port.getsockname()[1]
        closed_port.close()
        with pytest.raises(SmtpFailure, match="cannot connect"):
            smtp.submit(Login(env.alice.id, env.ip, port, env.alice.email, "x"), message(env, "x"))
        with pytest.raises(ImapFailure, match="cannot connect"):
            imap.list_page(
                Login(env.bob.id, env.ip, port, env.bob.email, "x"), "INBOX", limit=1, before=None
            )
        bad_tls = ClientTls("system")  # the self-signed node cert is not in the system CAs
        with pytest.raises(ImapFailure, match="cannot connect"):
            ImapPool(tls=bad_tls).list_page(imap_login(env, env.bob), "INBOX", limit=1, before=None)
        assert smtp.pool.stats()["open"] == 0 and imap.pool.stats()["open"] == 0
    finally:
        smtp.close()
        imap.close()


def test_sending_as_another_address_is_refused_by_the_server(env: MailEnv, tls: ClientTls) -> None:
    smtp = SmtpPool(tls=tls, local_hostname="api.test")
    try:
        forged = Envelope(env.bob.email, (env.bob.email,), b"Subject: forged\r\n\r\nx\r\n")
        with pytest.raises(SmtpFailure, match=r"^553 5\.7\.1"):
            smtp.submit(smtp_login(env, env.alice), forged)
        result = smtp.submit(smtp_login(env, env.alice), message(env, "after-refusal"))
        assert result.accepted == [env.bob.email]
        assert smtp.pool.stats()["open"] == 1  # the refusal kept the connection usable
    finally:
        smtp.close()


def test_secretbox_and_rows_agree(env: MailEnv) -> None:
    with env.runtime.db.transaction() as session:
        sealed = session.get(Mailbox, env.alice.id).password_encrypted  # type: ignore[union-attr]
    assert SecretBox(env.runtime.settings.secret_key, PASSWORD_PURPOSE).open(sealed) == (
        env.alice.password
    )


def test_submit_without_pipelining_and_with_leading_dots(env: MailEnv, tls: ClientTls) -> None:
    smtp = SmtpPool(tls=tls, local_hostname="api.test")
    try:
        lease = smtp.pool.acquire(smtp_login(env, env.alice))
        lease.conn.esmtp_features.pop("pipelining", None)  # as a server without RFC 2920
        smtp.pool.release(lease, keep=True)
        body = b".\r\n.leading dot\r\n..two\r\nend"
        data = (
            f"From: {env.alice.email}\r\nTo: {env.bob.email}\r\nSubject: dots\r\n"
            f"Message-ID: <dots@{env.domain}>\r\n\r\n"
        ).encode() + body
        result = smtp.submit(
            smtp_login(env, env.alice), Envelope(env.alice.email, (env.bob.email,), data)
        )
        assert result.accepted == [env.bob.email]
        assert "pipelining" not in next(iter(smtp.pool._idle.values()))[0].conn.esmtp_features
        _, raw = env.wait_for(env.bob, lambda raw: b"<dots@" in raw)
        assert raw.split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n") == body
    finally:
        smtp.close()


class _RefusingDataSmtp(AiosmtpdSmtp):
    """aiosmtpd refusing the DATA command itself while ``refuse`` is set (after the server
    accepted the sender and recipients), as a policy check at DATA would."""

    refuse = threading.Event()

    async def smtp_DATA(self, arg: str) -> None:
        if self.refuse.is_set():
            await self.push("554 5.7.1 data refused by policy")
            return
        await super().smtp_DATA(arg)


class _AcceptAll:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 2.0.0 Ok: queued as TEST"


def test_a_refused_data_command_leaves_the_pooled_connection_clean(
    mailnode: RunningNode, tls: ClientTls
) -> None:
    cert, key = tls_paths(mailnode.config)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    class Server(Controller):
        def factory(self) -> AiosmtpdSmtp:
            return _RefusingDataSmtp(
                self.handler,
                tls_context=context,
                require_starttls=True,
                authenticator=lambda *_args: AuthResult(success=True),
                auth_require_tls=True,
                hostname="refuser.test",
            )

    server = Server(_AcceptAll(), hostname="127.0.0.1", port=free_port())
    server.start()
    pool = SmtpPool(tls=tls, local_hostname="api.test")
    login = Login("mb_refuser", "127.0.0.1", server.port, "a@refuser.test", "secret")
    envelope = Envelope("a@refuser.test", ("b@elsewhere.test",), b"Subject: x\r\n\r\nbody\r\n")
    try:
        _RefusingDataSmtp.refuse.set()
        with pytest.raises(SmtpFailure, match=r"554 5\.7\.1 data refused"):
            pool.submit(login, envelope)
        _RefusingDataSmtp.refuse.clear()
        result = pool.submit(login, envelope)  # same connection: its transaction was reset
        assert result.response == "250 2.0.0 Ok: queued as TEST"
        assert pool.pool.open_count("mb_refuser") == 1
    finally:
        _RefusingDataSmtp.refuse.clear()
        pool.close()
        server.stop()
