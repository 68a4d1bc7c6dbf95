"""Hosted mailboxes for mail API tests: database rows plus the same state applied to the real
node, and direct IMAP helpers to look behind the API's back."""

from __future__ import annotations

import imaplib
import secrets
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from adbtd.clock import utcnow
from adbtd.db.models import DedicatedIp, Domain, Mailbox
from adbtd.ids import new_id
from adbtd.mailnode.keys import hash_mailbox_password
from adbtd.mailnode.layout import NodeLayout
from adbtd.mailnode.tls import tls_paths
from adbtd.runtime import Runtime
from adbtd.services.mailboxes import PASSWORD_PURPOSE
from adbtd.services.node_state import DKIM_KEY_PURPOSE, load_node_state
from adbtd.services.secretbox import SecretBox
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.integration.conftest import RunningNode

TEST_BCRYPT_COST = 4  # Dovecot checks any cost; 4 keeps fixtures fast


@dataclass(frozen=True)
class Box:
    id: str
    email: str
    password: str


@dataclass
class MailEnv:
    """One workspace with a domain, a dedicated IP and mailboxes, live on the node."""

    runtime: Runtime
    tenant: Tenant
    node: RunningNode
    domain: str
    ip: str
    boxes: dict[str, Box]

    @property
    def alice(self) -> Box:
        return self.boxes["alice"]

    @property
    def bob(self) -> Box:
        return self.boxes["bob"]

    def imap(self, box: Box) -> imaplib.IMAP4_SSL:
        conn = imaplib.IMAP4_SSL(
            self.ip, self.node.config.imap_port, ssl_context=insecure_tls(), timeout=10
        )
        conn.login(box.email, box.password)
        return conn

    def append(self, box: Box, raw: bytes, *, folder: str = "INBOX", flags: str = "") -> int:
        """APPEND a message; returns its UID (Dovecot answers with APPENDUID)."""
        conn = self.imap(box)
        try:
            typ, data = conn.append(folder, flags or None, None, raw)
            assert typ == "OK", data
            code = conn.untagged_responses.get("APPENDUID") or []
            text = data[0].decode() if data and data[0] else ""
            if "APPENDUID" in text:
                return int(text.split("APPENDUID", 1)[1].split()[1].rstrip("]"))
            return int(code[-1].split()[1]) if code else -1
        finally:
            conn.logout()

    def wait_for(
        self, box: Box, match: Callable[[bytes], bool], *, timeout: float = 15.0
    ) -> tuple[int, bytes]:
        """Poll the INBOX until a message matches; returns (uid, raw bytes)."""
        deadline = time.monotonic() + timeout
        conn = self.imap(box)
        try:
            while time.monotonic() < deadline:
                conn.select("INBOX", readonly=True)
                _, data = conn.uid("SEARCH", "ALL")
                for uid in reversed((data[0] or b"").split()):
                    _, fetched = conn.uid("FETCH", uid, "(BODY.PEEK[])")
                    raw = fetched[0][1] if fetched and isinstance(fetched[0], tuple) else b""
                    if match(raw):
                        return int(uid), raw
                time.sleep(0.05)
        finally:
            conn.logout()
        raise AssertionError(
            f"no matching message reached {box.email} in {timeout} s; Postfix log:\n"
            + self.log_tail()
        )

    def log_tail(self, lines: int = 30) -> str:
        log = NodeLayout(self.node.config.base_dir).postfix_log
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def flags(self, box: Box, uid: int, folder: str = "INBOX") -> list[str]:
        conn = self.imap(box)
        try:
            conn.select(folder, readonly=True)
            _, data = conn.uid("FETCH", str(uid), "(FLAGS)")
            return [f.decode() for f in imaplib.ParseFlags(data[0]) if f != b"\\Recent"]
        finally:
            conn.logout()


def insecure_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def node_settings(factory: Callable[..., Settings], node: RunningNode, **extra: object) -> Settings:
    """Settings whose ports and certificate are the session node's."""
    cert, key = tls_paths(node.config)
    values: dict[str, object] = {
        "submission_port": node.config.submission_port,
        "imap_port": node.config.imap_port,
        "smtp_port": node.config.smtp_port,
        "tls_cert_file": cert,
        "tls_key_file": key,
    }
    values.update(extra)
    return factory(**values)


def provision_mail(
    runtime: Runtime,
    tenant: Tenant,
    node: RunningNode,
    dkim_key: str,
    *,
    ip_last: int = 60,
    names: tuple[str, ...] = ("alice", "bob"),
) -> MailEnv:
    """Rows for a domain, an IP and mailboxes, then the node reconciled from the database."""
    secret = runtime.settings.secret_key
    domain = f"mail-{secrets.token_hex(4)}.test"
    ip = node.ip(ip_last)
    now = utcnow()
    boxes: dict[str, Box] = {}
    with runtime.db.transaction() as session:
        ip_row = DedicatedIp(
            id=new_id("ip"),
            address=ip,
            status="assigned",
            workspace_id=tenant.workspace_id,
            allocated_at=now,
        )
        dom = Domain(
            id=new_id("dom"),
            workspace_id=tenant.workspace_id,
            name=domain,
            mode="byo",
            status="verified",
            dkim_selector="adbtd-2026",
            dkim_private_key_encrypted=SecretBox(secret, DKIM_KEY_PURPOSE).seal(dkim_key),
            created_at=now,
        )
        session.add_all([ip_row, dom])
        session.flush()
        for name in names:
            password = secrets.token_urlsafe(24)
            box = Box(new_id("mb"), f"{name}@{domain}", password)
            session.add(
                Mailbox(
                    id=box.id,
                    workspace_id=tenant.workspace_id,
                    domain_id=dom.id,
                    ip_id=ip_row.id,
                    email=box.email,
                    status="active",
                    password_hash=hash_mailbox_password(password, cost=TEST_BCRYPT_COST),
                    password_encrypted=SecretBox(secret, PASSWORD_PURPOSE).seal(password),
                    created_at=now,
                )
            )
            boxes[name] = box
    with runtime.db.transaction() as session:
        state = load_node_state(session, secret_key=secret)
    node.apply(state)
    return MailEnv(runtime, tenant, node, domain, ip, boxes)
