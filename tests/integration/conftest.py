"""A real mail node (Postfix, Dovecot, OpenDKIM) and an SMTP sink, started once per test run.

``mailnode`` yields a ``RunningNode``; each test calls ``mailnode.apply(state)`` with its own
domains (unique names), which reconciles synchronously. ``smtp_sink`` is the node's outbound
relay and records each message with the address it came from.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from adbtd.mailnode.apply import ChangeSet
from adbtd.mailnode.keys import generate_dkim_key
from adbtd.mailnode.node import MailNode
from adbtd.mailnode.state import NodeConfig, NodeState

MAIL_BINARIES = ("postfix", "dovecot", "opendkim", "postmap", "doveadm")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _worker_offset() -> int:
    """Distinct IPs per xdist worker, so parallel sessions never share a listener."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0) if worker.startswith("gw") else 0


@dataclass
class SinkMessage:
    peer: str
    helo: str
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class SmtpSink:
    """Messages the node relayed out; ``wait_for`` polls with a bounded wait."""

    host: str
    port: int
    messages: list[SinkMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def relay(self) -> str:
        return f"{self.host}:{self.port}"

    def wait_for(self, rcpt: str, timeout: float = 10.0) -> SinkMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for message in self.messages:
                    if rcpt in message.rcpt_tos:
                        return message
            time.sleep(0.02)
        raise AssertionError(f"no message for {rcpt} reached the sink in {timeout} s")


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = SinkMessage(
            session.peer[0],
            session.host_name,
            envelope.mail_from,
            list(envelope.rcpt_tos),
            envelope.content,
        )
        with self.sink.lock:
            self.sink.messages.append(message)
        return "250 OK"


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """An aiosmtpd server on loopback standing in for ADBTD_OUTBOUND_RELAY."""
    sink = SmtpSink("127.0.0.1", free_port())
    controller = Controller(
        _SinkHandler(sink), hostname=sink.host, port=sink.port, server_hostname="sink.test"
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class RunningNode:
    """The session's node: ``apply`` replaces its whole state and reconciles at once."""

    node: MailNode
    config: NodeConfig
    state: NodeState = field(default_factory=NodeState)

    def apply(self, state: NodeState) -> ChangeSet:
        self.state = state
        return self.node.reconcile_once()

    def set_state(self, state: NodeState) -> None:
        """Change the desired state without reconciling (for ``notify()`` tests)."""
        self.state = state

    def ip(self, last: int) -> str:
        """A dedicated test address in 127.0.2.0/24 (127.0.3.x etc. for other xdist workers)."""
        return node_ip(last)

    def maildir(self, email: str) -> Path:
        """Where Dovecot keeps ``email``'s mail (``mail_home``/Maildir)."""
        local, _, domain = email.lower().rpartition("@")
        return self.config.base_dir / "mail" / domain / local / "Maildir"


def node_ip(last: int) -> str:
    return f"127.0.{2 + _worker_offset()}.{last}"


HELO_IP = 31  # the one test IP with its own HELO name (``NodeConfig.ip_hostnames``)


@pytest.fixture(scope="session")
def mailnode(smtp_sink: SmtpSink) -> Iterator[RunningNode]:
    """One real node per test run under a temp dir, on free ports, auth penalty off."""
    missing = [b for b in MAIL_BINARIES if shutil.which(b) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and {', '.join(missing) or 'the mail daemons'}")
    base = Path(tempfile.mkdtemp(prefix="adbtd-mailnode-"))
    base.chmod(0o755)
    config = NodeConfig(  # free ports: two test runs (or xdist workers) never collide
        base_dir=base,
        hostname="mail.node.test",
        submission_port=free_port(),
        imap_port=free_port(),
        smtp_port=free_port(),
        outbound_relay=smtp_sink.relay,
        auth_penalty=False,
        require_safe_keys=False,  # under /tmp; production keeps it on
        ip_hostnames={node_ip(HELO_IP): "out31.node.test"},
    )
    holder: dict[str, RunningNode] = {}
    node = MailNode(lambda: holder["node"].state, config)
    holder["node"] = RunningNode(node, config)
    node.start(interval=3600)
    try:
        yield holder["node"]
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def dkim_key() -> str:
    """One RSA key shared by every test domain (generating 2048-bit keys takes ~0.1 s each)."""
    return generate_dkim_key()


@pytest.fixture
def client_tls() -> ssl.SSLContext:
    """Clients trust the node's self-signed certificate in tests."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
