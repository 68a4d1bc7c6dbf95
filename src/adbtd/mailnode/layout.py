"""Where every file of a node lives under ``base_dir``; one place so render, apply and the
supervisor can never disagree about a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

POSTFIX_DIR = "postfix"
DOVECOT_DIR = "dovecot"
OPENDKIM_DIR = "opendkim"
DKIM_KEYS_DIR = "opendkim/keys"
DOVECOT_USERS = "dovecot/users"  # userdb: every mailbox, no secrets (LMTP has no local IP)
DOVECOT_PASSWD_DIR = "dovecot/passwd.d"  # noqa: S105 - a path: one passdb file per local IP

POSTFIX_MAPS = (
    "postfix/virtual_domains",
    "postfix/virtual_mailboxes",
    "postfix/sender_transport",
    "postfix/sender_login",
    "postfix/transport",
)

MANIFEST = ".adbtd-manifest.json"


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """Absolute paths of one node's configs, sockets, queues, mail and logs."""

    base_dir: Path

    @property
    def postfix_config(self) -> Path:
        return self.base_dir / POSTFIX_DIR

    @property
    def postfix_queue(self) -> Path:
        return self.base_dir / "postfix-queue"

    @property
    def postfix_data(self) -> Path:
        return self.base_dir / "postfix-data"

    @property
    def dovecot_config(self) -> Path:
        return self.base_dir / DOVECOT_DIR / "dovecot.conf"

    @property
    def dovecot_users(self) -> Path:
        return self.base_dir / DOVECOT_USERS

    @property
    def dovecot_passwd_dir(self) -> Path:
        return self.base_dir / DOVECOT_PASSWD_DIR

    @property
    def dovecot_run(self) -> Path:
        return self.base_dir / "dovecot-run"

    @property
    def dovecot_state(self) -> Path:
        return self.base_dir / "dovecot-state"

    @property
    def lmtp_socket(self) -> Path:
        return self.dovecot_run / "lmtp"

    @property
    def auth_socket(self) -> Path:
        return self.dovecot_run / "auth-postfix"

    @property
    def opendkim_config(self) -> Path:
        return self.base_dir / OPENDKIM_DIR / "opendkim.conf"

    @property
    def opendkim_run(self) -> Path:
        return self.base_dir / "opendkim-run"

    @property
    def opendkim_socket(self) -> Path:
        return self.opendkim_run / "opendkim.sock"

    @property
    def opendkim_pid(self) -> Path:
        return self.opendkim_run / "opendkim.pid"

    @property
    def dkim_keys(self) -> Path:
        return self.base_dir / DKIM_KEYS_DIR

    @property
    def mail_root(self) -> Path:
        return self.base_dir / "mail"

    @property
    def log_dir(self) -> Path:
        return self.base_dir / "log"

    @property
    def postfix_log(self) -> Path:
        return self.log_dir / "postfix.log"

    @property
    def dovecot_log(self) -> Path:
        return self.log_dir / "dovecot.log"

    @property
    def opendkim_log(self) -> Path:
        return self.log_dir / "opendkim.log"

    @property
    def tls_dir(self) -> Path:
        return self.base_dir / "tls"


def dovecot_passwd_path(ip: str) -> str:
    """Relative path of the passwd-file Dovecot reads for logins arriving at ``ip`` (``%l``)."""
    return f"{DOVECOT_PASSWD_DIR}/{ip}"


def dkim_key_path(domain: str, selector: str) -> str:
    """Relative path of one domain's private key; one file per domain and selector."""
    return f"{DKIM_KEYS_DIR}/{domain}.{selector}.private"
