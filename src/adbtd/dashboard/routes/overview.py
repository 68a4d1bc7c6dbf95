"""The workspace overview: what the workspace holds and the next step towards a first send."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from adbtd.dashboard.deps import RuntimeDep, ViewerDep, render
from adbtd.services import api_keys, billing, mailboxes, orders

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    workspace_id = viewer.workspace.id
    with runtime.db.transaction() as session:
        account = billing.account_for(session, workspace_id)
        counts = billing.billable_counts(session, workspace_id)
        keys = [
            k for k in api_keys.list_keys(session, workspace_id=workspace_id) if not k.revoked_at
        ]
        boxes = mailboxes.list_mailboxes(session, workspace_id=workspace_id)
        recent = orders.list_orders(session, workspace_id=workspace_id, limit=5)
    first_active = next((mb for mb, _ip in boxes if mb.status == mailboxes.ACTIVE), None)
    steps = [
        ("Add a payment method", account.payment_method_ref is not None, "/billing"),
        ("Place your first order", bool(recent) or counts["domain"] > 0, "/orders"),
        ("Create an API key", bool(keys), "/api-keys"),
        ("Send your first message", False, "/mailboxes"),
    ]
    return render(
        request,
        "overview.html",
        viewer=viewer,
        active="overview",
        account=account,
        counts=counts,
        keys=len(keys),
        steps=steps,
        recent=recent,
        first_mailbox=first_active,
        api_base=runtime.settings.base_url + "/api/v1",
    )
