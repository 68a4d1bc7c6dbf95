"""Read a mail node's desired state out of the database (the reconciler's state provider)."""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from adbtd.db.models import DedicatedIp, Domain, Mailbox
from adbtd.mailnode.render import (
    is_dkim_selector,
    is_domain_name,
    is_dovecot_hash,
    is_ipv4,
    is_local_part,
)
from adbtd.mailnode.state import NodeDomain, NodeMailbox, NodeState
from adbtd.services.secretbox import SecretBox
from adbtd.settings import DEFAULT_NODE

log = logging.getLogger("adbtd.mailnode")

DKIM_KEY_PURPOSE = "dkim-key"
LIVE_IP_STATUSES = ("assigned",)


def load_node_state(
    session: Session, *, node: str = DEFAULT_NODE, secret_key: str, helo_per_domain: bool = True
) -> NodeState:
    """Everything provisioned on ``node``: its assigned IPs, the domains with a DKIM key of the
    workspaces holding them, and their active mailboxes (a workspace's IPs are on one node).

    With ``helo_per_domain`` each IP says ``mail.<domain>`` in HELO, for the workspace's first
    domain by name: the host the domain's MX and A records point at (``dns_records``).
    """
    box = SecretBox(secret_key, DKIM_KEY_PURPOSE)
    ips = [
        row
        for row in session.execute(
            select(DedicatedIp.id, DedicatedIp.address, DedicatedIp.workspace_id).where(
                DedicatedIp.status.in_(LIVE_IP_STATUSES), DedicatedIp.node == node
            )
        )
        if _renderable("dedicated IP", row.address, is_ipv4(row.address))
    ]
    address_by_id = {row.id: row.address for row in ips}
    ips_by_workspace: dict[str, list[str]] = defaultdict(list)
    for row in ips:
        if row.workspace_id is not None:
            ips_by_workspace[row.workspace_id].append(row.address)
    domains = [
        NodeDomain(
            name=domain.name,
            dkim_selector=domain.dkim_selector,
            dkim_private_key_pem=key,
            ips=tuple(sorted(ips_by_workspace.get(domain.workspace_id, ()))),
        )
        for domain in session.scalars(
            select(Domain).where(Domain.dkim_private_key_encrypted.is_not(None))
        )
        if domain.dkim_private_key_encrypted is not None
        and ips_by_workspace.get(domain.workspace_id)
        and (key := _dkim_key(box, domain.name, domain.dkim_private_key_encrypted)) is not None
        and _renderable("DKIM selector of", domain.name, is_dkim_selector(domain.dkim_selector))
    ]
    hosted = {d.name for d in domains}
    mailboxes = [
        NodeMailbox(email=email, password_hash=password_hash, ip=address_by_id[ip_id])
        for email, password_hash, ip_id in session.execute(
            select(Mailbox.email, Mailbox.password_hash, Mailbox.ip_id).where(
                Mailbox.status == "active",
                Mailbox.password_hash.is_not(None),
                Mailbox.ip_id.is_not(None),
            )
        )
        if password_hash is not None
        and ip_id in address_by_id
        and email.rpartition("@")[2] in hosted
        and _renderable("password hash of", email, is_dovecot_hash(password_hash))
    ]
    good_domains = sorted(_renderable_domains(domains), key=lambda d: d.name)
    return NodeState(
        ips=tuple(sorted(address_by_id.values())),
        domains=tuple(good_domains),
        mailboxes=tuple(sorted(_renderable_mailboxes(mailboxes), key=lambda m: m.email)),
        ip_hostnames=_domain_helo_names(good_domains) if helo_per_domain else (),
    )


def _domain_helo_names(domains: list[NodeDomain]) -> tuple[tuple[str, str], ...]:
    names: dict[str, str] = {}
    for domain in domains:  # sorted by name: the first domain of a workspace names its IPs
        for ip in domain.ips:
            names.setdefault(ip, f"mail.{domain.name}")
    return tuple(sorted(names.items()))


def _renderable(what: str, name: str, ok: bool) -> bool:
    """Defence in depth: a row the node cannot render is logged and left off, so that one bad
    row never stops every other tenant's node updates."""
    if not ok:
        log.error("%s %r cannot be rendered; left off the mail node", what, name)
    return ok


def _dkim_key(box: SecretBox, domain: str, sealed: str) -> str | None:
    try:
        return box.open(sealed)
    except ValueError:
        log.error("the DKIM key of %r cannot be opened with this secret key; left off", domain)
        return None


def _renderable_domains(domains: list[NodeDomain]) -> list[NodeDomain]:
    """Defence in depth: one bad row must not stop every tenant's node updates."""
    good = [d for d in domains if is_domain_name(d.name)]
    for bad in set(d.name for d in domains) - {d.name for d in good}:
        log.error("domain %r cannot be rendered; left off the mail node", bad)
    return good


def _renderable_mailboxes(mailboxes: list[NodeMailbox]) -> list[NodeMailbox]:
    good = [m for m in mailboxes if is_local_part(m.email.rpartition("@")[0])]
    for bad in set(m.email for m in mailboxes) - {m.email for m in good}:
        log.error("mailbox %r cannot be rendered; left off the mail node", bad)
    return good
