"""Orders: the workspace's first order (the service ``adbtd orders create`` uses) and the list."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from adbtd.dashboard.deps import RuntimeDep, ViewerDep, redirect, render
from adbtd.errors import AdbtdError, PaymentRequired
from adbtd.runtime import Runtime
from adbtd.services import billing, domains, ips, orders

router = APIRouter()
MAX_FORM_MAILBOXES = 100
STATUS_BY_CODE = {"conflict": 409, "not_found": 404, "inventory_unavailable": 503}


def split_mailboxes(raw: str, domain: str) -> list[str]:
    """Addresses from the textarea: one per line or comma; a bare name gets ``@domain``."""
    names = [part.strip() for part in re.split(r"[\s,;]+", raw) if part.strip()]
    domain = domain.strip().lower().rstrip(".")
    return [name if "@" in name else f"{name}@{domain}" for name in names]


def _page(
    request: Request,
    runtime: Runtime,
    viewer: ViewerDep,
    *,
    status: int = 200,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    checkout_url: str | None = None,
) -> Response:
    workspace_id = viewer.workspace.id
    with runtime.db.transaction() as session:
        recent = orders.list_orders(session, workspace_id=workspace_id)
        rows = [(order, orders.ordered_items(order)) for order in recent]
        has_resources = domains.workspace_has_domain(
            session, workspace_id=workspace_id
        ) or ips.workspace_has_ip(session, workspace_id=workspace_id)
        has_payment = billing.account_for(session, workspace_id).payment_method_ref is not None
    return render(
        request,
        "orders.html",
        status=status,
        viewer=viewer,
        active="orders",
        rows=rows,
        can_order_first=not has_resources,
        pending=any(order.status == orders.PENDING for order in recent),
        has_payment=has_payment,
        checkout=f"{billing.CHECKOUT_PATH}?workspace={workspace_id}",
        form=form or {"mode": "byo", "ips": 1},
        error=error,
        checkout_url=checkout_url,
    )


@router.get("/orders", response_class=HTMLResponse)
def list_orders(request: Request, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    return _page(request, runtime, viewer)


@router.post("/orders/first", response_class=HTMLResponse)
def first_order(
    request: Request,
    runtime: RuntimeDep,
    viewer: ViewerDep,
    domain: Annotated[str, Form(max_length=253)] = "",
    mode: Annotated[str, Form(max_length=8)] = "byo",
    ip_count: Annotated[str, Form(max_length=16)] = "1",
    mailboxes: Annotated[str, Form(max_length=20000)] = "",
) -> Response:
    form = {"domain": domain, "mode": mode, "ips": ip_count, "mailboxes": mailboxes}
    try:
        count = int(ip_count)
    except ValueError:
        return _page(
            request, runtime, viewer, status=400, form=form, error="Enter a number of IPs."
        )
    emails = split_mailboxes(mailboxes, domain)
    if len(emails) > MAX_FORM_MAILBOXES:
        return _page(
            request,
            runtime,
            viewer,
            status=400,
            form=form,
            error=f"At most {MAX_FORM_MAILBOXES} mailboxes per order.",
        )
    try:
        with runtime.db.transaction() as session:
            placed = orders.place_first_order(
                session,
                workspace_id=viewer.workspace.id,
                domain=domain,
                ip_count=count,
                emails=emails,
                settings=runtime.settings,
                mode=mode,
            )
    except PaymentRequired as exc:
        return _page(
            request,
            runtime,
            viewer,
            status=402,
            form=form,
            error="Add a payment method before your first order.",
            checkout_url=str(exc.extra.get("checkoutUrl", "")),
        )
    except AdbtdError as exc:
        status = STATUS_BY_CODE.get(exc.code, 400)
        return _page(request, runtime, viewer, status=status, form=form, error=exc.message)
    runtime.order_placed()
    return redirect("/orders", notice="order-placed", order=placed.order_id)
