"""Orders (an addition to the reference): poll what a create call started."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from adbtd.api.deps import AuthDep, ReadSessionDep
from adbtd.api.schemas import Envelope, OutModel, error_responses
from adbtd.clock import iso_ms
from adbtd.db.models import Order
from adbtd.services import orders

router = APIRouter(tags=["orders"])


class OrderOut(OutModel):
    id: str
    kind: str
    status: str
    error: str | None
    created_at: str
    completed_at: str | None
    domain: str | None
    mode: str | None
    ips: int
    emails: list[str]


def order_out(order: Order) -> OrderOut:
    items = orders.ordered_items(order)
    return OrderOut(
        id=order.id,
        kind=order.kind,
        status=order.status,
        error=order.error if order.status == orders.FAILED else None,
        created_at=iso_ms(order.created_at) or "",
        completed_at=iso_ms(order.completed_at),
        domain=items.domain,
        mode=items.mode,
        ips=items.ips,
        emails=items.emails,
    )


@router.get("/orders", response_model=Envelope[list[OrderOut]], responses=error_responses())
def list_orders(
    auth: AuthDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = orders.DEFAULT_LIST_LIMIT,
) -> Envelope[list[OrderOut]]:
    """Returns the workspace's most recent orders, newest first."""
    found = orders.list_orders(session, workspace_id=auth.workspace_id, limit=limit)
    return Envelope(data=[order_out(o) for o in found])


@router.get("/orders/{order_id}", response_model=Envelope[OrderOut], responses=error_responses(404))
def read_order(order_id: str, auth: AuthDep, session: ReadSessionDep) -> Envelope[OrderOut]:
    """Returns one order: pending_provision, then completed or failed (with its error)."""
    return Envelope(
        data=order_out(orders.get_order(session, workspace_id=auth.workspace_id, order_id=order_id))
    )
