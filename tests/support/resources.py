"""Helpers for resource tests: inventory, a provisioned first order, and database snapshots."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from adbtd.db.models import (
    DedicatedIp,
    Domain,
    Mailbox,
    NodeRevision,
    Order,
    SubscriptionItem,
)
from adbtd.runtime import Runtime
from adbtd.services import billing, inventory, orders
from adbtd.services.orders import PlacedOrder
from adbtd.workers.orders import OrderWorker
from tests.conftest import Tenant

DEFAULT_POOL = "127.0.1.1-127.0.1.20"
MAILBOX_KEYS = {
    "id",
    "email",
    "smtpHost",
    "imapHost",
    "submissionPort",
    "imapPort",
    "status",
    "createdAt",
}
DOMAIN_KEYS = {
    "id",
    "name",
    "mode",
    "status",
    "spfOk",
    "dkimOk",
    "dmarcOk",
    "mxOk",
    "dkimSelector",
    "createdAt",
    "lastVerifiedAt",
}
IP_KEYS = {"id", "address", "status", "allocatedAt", "lastReputationAt", "reputationFlags"}
ISO_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def add_inventory(runtime: Runtime, spec: str = DEFAULT_POOL, *, node: str = "main") -> list[str]:
    with runtime.db.transaction() as session:
        return inventory.add_addresses(session, items=[spec], node=node).added


def provision(runtime: Runtime) -> int:
    """Run a worker until the queue is empty; returns how many orders it took."""
    return OrderWorker(runtime, poll_seconds=0.05).drain()


def unique_domain(stem: str = "acme") -> str:
    return f"{stem}-{secrets.token_hex(3)}.test"


def first_order(
    runtime: Runtime,
    tenant: Tenant,
    *,
    domain: str | None = None,
    ips: int = 1,
    emails: list[str] | None = None,
    run: bool = True,
) -> PlacedOrder:
    """Place (and by default provision) a tenant's first order; mailboxes default to alice@."""
    name = domain or unique_domain()
    wanted = [f"alice@{name}"] if emails is None else emails
    with runtime.db.transaction() as session:
        placed = orders.place_first_order(
            session,
            workspace_id=tenant.workspace_id,
            domain=name,
            ip_count=ips,
            emails=wanted,
            settings=runtime.settings,
        )
    if run:
        provision(runtime)
    return placed


def snapshot(runtime: Runtime) -> dict[str, Any]:
    """Every row a resource request could change, to assert that a refused request changed none."""
    with runtime.db.transaction() as session:

        def rows(model: Any, *cols: Any) -> list[tuple[Any, ...]]:
            stmt = select(*cols).order_by(*cols)
            return [tuple(row) for row in session.execute(stmt)]

        return {
            "domains": rows(Domain, Domain.id, Domain.name, Domain.status, Domain.workspace_id),
            "ips": rows(
                DedicatedIp,
                DedicatedIp.address,
                DedicatedIp.status,
                DedicatedIp.workspace_id,
                DedicatedIp.order_id,
            ),
            "mailboxes": rows(Mailbox, Mailbox.id, Mailbox.email, Mailbox.status, Mailbox.ip_id),
            "orders": rows(Order, Order.id, Order.status),
            "billing": rows(
                SubscriptionItem,
                SubscriptionItem.workspace_id,
                SubscriptionItem.kind,
                SubscriptionItem.quantity,
            ),
            "node": rows(NodeRevision, NodeRevision.revision),
        }


def quantities(runtime: Runtime, workspace_id: str) -> dict[str, int]:
    with runtime.db.transaction() as session:
        return billing.quantities(session, workspace_id)


def node_revision(runtime: Runtime) -> int:
    with runtime.db.transaction() as session:
        return session.scalar(select(NodeRevision.revision)) or 0
