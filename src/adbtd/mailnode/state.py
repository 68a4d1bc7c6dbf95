"""The desired state of a mail node: plain values the reconciler renders into daemon configs.

``NodeState`` is what the database says (tenants' domains, IPs, mailboxes); ``NodeConfig`` is
what the operator says (paths, ports, relay, certificates). Rendering takes both and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class NodeMailbox:
    """One mailbox: it logs in with ``password_hash`` and sends from ``ip``."""

    email: str
    password_hash: str  # Dovecot scheme-prefixed, e.g. "{ARGON2ID}$argon2id$..."
    ip: str  # the dedicated IP the mailbox's mail leaves from and its listeners run on


@dataclass(frozen=True, slots=True)
class NodeDomain:
    """One hosted domain with its DKIM key (PEM, PKCS#8) and the workspace's IPs."""

    name: str
    dkim_selector: str
    dkim_private_key_pem: str
    ips: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeState:
    """Everything tenants own on this node, sorted so equal states render to equal files."""

    ips: tuple[str, ...] = ()
    domains: tuple[NodeDomain, ...] = ()
    mailboxes: tuple[NodeMailbox, ...] = ()
    # HELO name per dedicated IP from the tenants' side (``mail.<domain>``, the name the domain's
    # MX and A records publish); the operator's ``NodeConfig.ip_hostnames`` wins over it.
    ip_hostnames: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Operator-side facts about a node: where its files live and how it talks to the world."""

    base_dir: Path
    hostname: str
    submission_port: int
    imap_port: int
    smtp_port: int
    outbound_relay: str = ""  # "host:port" or ""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    listen_ips: tuple[str, ...] = field(default=())  # extra always-on listeners (e.g. 127.0.0.1)
    auth_penalty: bool = True  # Dovecot's delay after a failed login; off only in test nodes
    require_safe_keys: bool = True  # OpenDKIM refuses keys on unsafe paths; off only under /tmp
    # HELO name per dedicated IP (match each IP's PTR record); IPs not listed use ``hostname``
    ip_hostnames: Mapping[str, str] = field(default_factory=dict, hash=False)

    def helo_name(self, ip: str) -> str:
        """The name outbound mail from ``ip`` announces in HELO/EHLO."""
        return self.ip_hostnames.get(ip, self.hostname)
