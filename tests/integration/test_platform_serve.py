"""The whole platform as an operator runs it: `adbtd serve` with its real mail node.

Operator CLI → first order → the worker provisions → the node reconciles from the database →
the mailbox logs in over IMAP at its dedicated IP, mail sent through the API arrives, and a
deleted mailbox can no longer log in.
"""

from __future__ import annotations

import imaplib
import json
import os
import secrets
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adbtd.mailnode.layout import NodeLayout
from adbtd.mailnode.tls import self_signed_pair
from tests.support.postgres import free_port

pytestmark = pytest.mark.integration


@dataclass
class Platform:
    env: dict[str, str]
    base: str
    imap_port: int
    process: subprocess.Popen[str]
    certificate: bytes  # the operator's (ADBTD_TLS_CERT_FILE), DER

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "adbtd.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


def tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def imap_login(ip: str, port: int, email: str, password: str) -> bool:
    try:
        conn = imaplib.IMAP4_SSL(ip, port, ssl_context=tls(), timeout=10)
    except OSError:
        return False
    try:
        conn.login(email, password)
    except imaplib.IMAP4.error:
        return False
    conn.logout()
    return True


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


@pytest.fixture
def platform(database_url: str) -> Iterator[Platform]:
    # Not under /tmp: OpenDKIM wants keys on a path no other user can write.
    data_dir = Path("/var/tmp") / f"adbtd-serve-{secrets.token_hex(4)}"
    data_dir.mkdir(mode=0o755)
    octet = 100 + secrets.randbelow(150)
    http_port, imap_port = free_port(), free_port()
    cert_pem, key_pem = self_signed_pair("mail.operator.test")  # as a real certificate would be
    (data_dir / "operator.crt").write_bytes(cert_pem)
    (data_dir / "operator.key").write_bytes(key_pem)
    (data_dir / "operator.key").chmod(0o600)
    env = {
        **os.environ,
        "ADBTD_DATA_DIR": str(data_dir),
        "ADBTD_DATABASE_URL": database_url,
        "ADBTD_HTTP_PORT": str(http_port),
        "ADBTD_IMAP_PORT": str(imap_port),
        "ADBTD_SUBMISSION_PORT": str(free_port()),
        "ADBTD_SMTP_PORT": str(free_port()),
        "ADBTD_IP_POOL": f"127.0.{octet}.1-127.0.{octet}.4",
        "ADBTD_PDNS_LOCAL": "false",
        "ADBTD_RUN_DNS_WORKER": "false",
        "ADBTD_RECONCILE_INTERVAL_SECONDS": "30",
        "ADBTD_TLS_CERT_FILE": str(data_dir / "operator.crt"),
        "ADBTD_TLS_KEY_FILE": str(data_dir / "operator.key"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "adbtd.cli.main", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{http_port}"
    daemons: list[int] = []
    try:
        wait_until(lambda: _up(base) or process.poll() is not None, 60, "serve start")
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        daemons = daemon_pids(data_dir / "mailnode")
        der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
        yield Platform(env, base, imap_port, process, der)
    finally:
        process.send_signal(signal.SIGTERM)  # what systemd and `kill` send
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)
    assert process.returncode == 0
    assert len(daemons) == 3
    assert [pid for pid in daemons if Path(f"/proc/{pid}").exists()] == []


def daemon_pids(node_dir: Path) -> list[int]:
    """The pids of the node's Postfix master, Dovecot and OpenDKIM, from their pid files."""
    layout = NodeLayout(node_dir)
    files = [
        layout.postfix_queue / "pid" / "master.pid",
        layout.dovecot_run / "master.pid",
        layout.opendkim_pid,
    ]
    return [int(f.read_text().split()[0]) for f in files if f.exists()]


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_first_order_to_imap_login_send_and_delete(platform: Platform) -> None:
    platform.cli("workspaces", "create", "acme", "--name", "Acme", "--payment-method")
    token = platform.cli("keys", "create", "acme", "--name", "e2e").split()[-1]
    auth = {"Authorization": f"Bearer {token}"}
    order = json.loads(
        platform.cli(
            "orders",
            "create",
            "acme",
            "--domain",
            "acme-e2e.test",
            "--ips",
            "1",
            "--mailbox",
            "alice@acme-e2e.test",
            "--mailbox",
            "bob@acme-e2e.test",
        )
    )
    assert order["status"] == "pending_provision"

    with httpx.Client(base_url=f"{platform.base}/api/v1", headers=auth, timeout=30) as api:
        started = time.monotonic()
        wait_until(
            lambda: api.get(f"/orders/{order['orderId']}").json()["data"]["status"] == "completed",
            10,
            "order completion",
        )
        assert time.monotonic() - started < 10
        boxes = {b["email"]: b for b in api.get("/mailboxes").json()["data"]}
        alice, bob = boxes["alice@acme-e2e.test"], boxes["bob@acme-e2e.test"]
        assert alice["status"] == "active" and alice["imapPort"] == platform.imap_port
        ip = alice["imapHost"]
        password = platform.cli("mailboxes", "password", "alice@acme-e2e.test").split()[-1]
        bob_password = platform.cli("mailboxes", "password", "bob@acme-e2e.test").split()[-1]
        wait_until(
            lambda: imap_login(ip, platform.imap_port, alice["email"], password),
            5,
            "alice's IMAP login",
        )
        # The operator's certificate is what the daemons present, on IMAP and on submission.
        with (
            socket.create_connection((ip, platform.imap_port), timeout=10) as raw,
            tls().wrap_socket(raw) as wrapped,
        ):
            assert wrapped.getpeercert(binary_form=True) == platform.certificate
        with smtplib.SMTP(ip, alice["submissionPort"], local_hostname="t.test", timeout=10) as smtp:
            smtp.starttls(context=tls())
            assert smtp.sock is not None
            assert smtp.sock.getpeercert(binary_form=True) == platform.certificate  # type: ignore[attr-defined]

        subject = f"e2e {secrets.token_hex(4)}"
        sent = api.post(
            f"/mailboxes/{alice['id']}/send",
            json={"to": bob["email"], "subject": subject, "text": "hello bob"},
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["data"]["accepted"] == [bob["email"]]

        def arrived() -> bool:
            listing = api.get(f"/mailboxes/{bob['id']}/messages")
            return listing.status_code == 200 and any(
                m["subject"] == subject for m in listing.json()["data"]["messages"]
            )

        wait_until(arrived, 15, "delivery to bob")

        deleted = api.delete(f"/mailboxes/{alice['id']}")
        assert deleted.json() == {"data": {"deleted": alice["email"]}}
        wait_until(
            lambda: not imap_login(ip, platform.imap_port, alice["email"], password),
            5,
            "refusal of the deleted mailbox",
        )
        assert imap_login(ip, platform.imap_port, bob["email"], bob_password)
