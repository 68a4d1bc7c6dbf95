"""Billing: payment method, quantities, monthly estimate, and the checkout ``checkoutUrl`` names."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adbtd.dashboard.deps import ProviderDep, RuntimeDep, ViewerDep, redirect, render
from adbtd.errors import NotFound
from adbtd.services import billing, billing_flows

router = APIRouter()


@router.get("/billing", response_class=HTMLResponse)
def billing_page(request: Request, runtime: RuntimeDep, viewer: ViewerDep) -> Response:
    workspace = viewer.workspace
    with runtime.db.transaction() as session:
        account = billing.account_for(session, workspace.id)
        quantities = billing.quantities(session, workspace.id)
    estimate = billing_flows.monthly_estimate(
        runtime.settings, currency=workspace.currency, quantities=quantities
    )
    return render(
        request,
        "billing.html",
        viewer=viewer,
        active="billing",
        account=account,
        estimate=estimate,
        provider=runtime.settings.billing_provider,
        cancelled=request.query_params.get("checkout") == "cancelled",
    )


@router.get("/billing/checkout", response_class=HTMLResponse)
def checkout(
    request: Request, runtime: RuntimeDep, provider: ProviderDep, viewer: ViewerDep
) -> Response:
    """Local provider: a page that records a test method. Stripe: off to Checkout."""
    if provider.hosted_checkout:
        url = billing_flows.start_checkout(
            runtime.db, provider, workspace_id=viewer.workspace.id, base_url=str(_base(request))
        )
        return RedirectResponse(url, status_code=303)
    with runtime.db.transaction() as session:
        account = billing.account_for(session, viewer.workspace.id)
    return render(request, "checkout_local.html", viewer=viewer, active="billing", account=account)


@router.post("/billing/checkout")
def record_local_method(runtime: RuntimeDep, provider: ProviderDep, viewer: ViewerDep) -> Response:
    """The local provider's checkout: record a test payment method for the workspace."""
    if provider.hosted_checkout:
        raise NotFound("checkout happens at the payment provider")
    with runtime.db.transaction() as session:
        billing.record_payment_method(session, workspace_id=viewer.workspace.id)
    billing_flows.push_quantities(
        runtime.db, provider, runtime.settings, workspace_id=viewer.workspace.id
    )
    return redirect("/billing", notice="payment-method-added", workspace=viewer.workspace.id)


@router.get("/billing/checkout/done")
def checkout_done(
    runtime: RuntimeDep, provider: ProviderDep, viewer: ViewerDep, session_id: str = ""
) -> Response:
    """Stripe's success URL: record the method now rather than wait for the webhook."""
    if not provider.hosted_checkout or not session_id.startswith("cs_"):
        raise NotFound("no such checkout")
    billing_flows.complete_checkout(
        runtime.db,
        provider,
        runtime.settings,
        checkout_ref=session_id,
        member_of={w.id for w in viewer.workspaces},
    )
    return redirect("/billing", notice="payment-method-added")


def _base(request: Request) -> str:
    """The public base URL: the setting when set, else where this request came in."""
    settings = request.app.state.runtime.settings
    if settings.public_base_url:
        return str(settings.base_url)
    return str(request.base_url).rstrip("/").removesuffix("/dashboard")
