"""Rows and zones the DNS tests share: a workspace's IPs and domain, and its correct records."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from adbtd.clock import utcnow
from adbtd.db.models import DedicatedIp, Domain
from adbtd.ids import new_id
from adbtd.mailnode.keys import dkim_public_record, generate_dkim_key
from adbtd.runtime import Runtime
from adbtd.services.dns_records import required_records
from adbtd.services.node_state import DKIM_KEY_PURPOSE
from adbtd.services.secretbox import SecretBox
from tests.support.dns_server import DnsTestServer

SELECTOR = "adbtd-2026"


@cache
def dkim_key(slot: int = 0) -> str:
    """RSA keys are slow to make; tests share a couple."""
    return generate_dkim_key()


@dataclass(frozen=True)
class SeededDomain:
    id: str
    name: str
    workspace_id: str
    ips: tuple[str, ...]
    dkim_record: str


def add_ips(runtime: Runtime, workspace_id: str, *addresses: str, node: str = "main") -> list[str]:
    ids = []
    with runtime.db.transaction() as session:
        for address in addresses:
            ip = DedicatedIp(
                id=new_id("ip"),
                address=address,
                node=node,
                status="assigned",
                workspace_id=workspace_id,
                allocated_at=utcnow(),
            )
            session.add(ip)
            ids.append(ip.id)
    return ids


def add_domain(
    runtime: Runtime,
    workspace_id: str,
    name: str,
    ips: tuple[str, ...],
    *,
    managed: bool = False,
    status: str = "unverified",
) -> SeededDomain:
    pem = dkim_key()
    box = SecretBox(runtime.settings.secret_key, DKIM_KEY_PURPOSE)
    with runtime.db.transaction() as session:
        domain = Domain(
            id=new_id("dom"),
            workspace_id=workspace_id,
            name=name,
            mode="buy" if managed else "byo",
            status=status,
            managed=managed,
            dkim_selector=SELECTOR,
            dkim_private_key_encrypted=box.seal(pem),
            created_at=utcnow(),
        )
        session.add(domain)
    return SeededDomain(domain.id, name, workspace_id, ips, dkim_public_record(pem))


def publish_correct_records(dns: DnsTestServer, seeded: SeededDomain) -> None:
    """Exactly what ``GET /domains/:id`` tells the customer to publish."""
    for record in required_records(
        domain=seeded.name,
        ips=seeded.ips,
        dkim_selector=SELECTOR,
        dkim_record=seeded.dkim_record,
    ):
        dns.add(record.name, record.type, record.value)
