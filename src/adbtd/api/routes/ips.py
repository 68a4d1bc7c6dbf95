"""Dedicated IPs: list, order more (an order), release into cooldown."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Field

from adbtd.api.deps import AuthDep, ReadSessionDep, RuntimeDep
from adbtd.api.schemas import Envelope, InModel, OutModel, error_responses
from adbtd.clock import iso_ms
from adbtd.services import ips, orders

router = APIRouter(tags=["ips"])


class IpOrderCreate(InModel):
    count: Annotated[int, Field(ge=orders.MIN_IPS, le=orders.MAX_IPS)]


class IpOut(OutModel):
    id: str
    address: str
    status: str
    allocated_at: str | None
    last_reputation_at: str | None
    reputation_flags: list[dict[str, Any]] | None


class IpOrderOut(OutModel):
    order_id: str
    status: str
    ips: int


class IpReleasedOut(OutModel):
    released: str
    cancelled_subscription: bool


@router.get("/ips", response_model=Envelope[list[IpOut]], responses=error_responses())
def list_ips(auth: AuthDep, session: ReadSessionDep) -> Envelope[list[IpOut]]:
    """Returns the dedicated IPs of the workspace (reserved by a pending order, or assigned)."""
    return Envelope(
        data=[
            IpOut(
                id=ip.id,
                address=ip.address,
                status=ip.status,
                allocated_at=iso_ms(ip.allocated_at),
                last_reputation_at=iso_ms(ip.last_reputation_at),
                reputation_flags=ip.reputation_flags,
            )
            for ip in ips.list_ips(session, workspace_id=auth.workspace_id)
        ]
    )


@router.post("/ips", response_model=Envelope[IpOrderOut], responses=error_responses(402, 409, 503))
def create_ips(body: IpOrderCreate, auth: AuthDep, runtime: RuntimeDep) -> Envelope[IpOrderOut]:
    """Orders 1-10 more dedicated IPs; needs a domain. 503 when the inventory is short."""
    with runtime.db.transaction() as session:
        placed = orders.place_ip_order(
            session, workspace_id=auth.workspace_id, count=body.count, settings=runtime.settings
        )
    runtime.order_placed()
    return Envelope(data=IpOrderOut(order_id=placed.order_id, status=placed.status, ips=placed.ips))


@router.delete(
    "/ips/{ip_id}", response_model=Envelope[IpReleasedOut], responses=error_responses(404, 409)
)
def release_ip(ip_id: str, auth: AuthDep, runtime: RuntimeDep) -> Envelope[IpReleasedOut]:
    """Releases an IP; its mailboxes move to the workspace's other IPs, or 409."""
    with runtime.db.transaction() as session:
        released = ips.release_ip(
            session,
            workspace_id=auth.workspace_id,
            ip_id=ip_id,
            cooldown_days=runtime.settings.ip_cooldown_days,
        )
    runtime.resources_changed(auth.workspace_id)
    return Envelope(
        data=IpReleasedOut(
            released=released.address, cancelled_subscription=released.cancelled_subscription
        )
    )
