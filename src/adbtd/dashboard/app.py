"""The dashboard: a server-rendered app mounted at ``/dashboard`` beside the API."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from adbtd.adapters.billing import BillingProvider, make_billing_provider
from adbtd.asgi import NO_TELEMETRY
from adbtd.dashboard.deps import PREFIX, LoginRequired, make_templates, render
from adbtd.dashboard.routes import account, billing, keys, orders, overview, resources
from adbtd.dashboard.security import SecurityHeadersMiddleware, verify_csrf
from adbtd.errors import AdbtdError, BillingUnavailable, CsrfRejected, NotFound
from adbtd.runtime import Runtime

log = logging.getLogger("adbtd.dashboard")
STATIC_DIR = Path(__file__).parent / "static"
ROUTE_MODULES = (account, overview, keys, orders, resources, billing)
NOTICES = {
    "welcome": "Welcome! Your workspace is ready.",
    "signed-out": "You are signed out.",
    "key-revoked": "The key is revoked; requests with it now get 401.",
    "order-placed": "Order placed. It is being provisioned; this page shows its status.",
    "payment-method-added": "Payment method saved. You can place orders now.",
}


def create_dashboard(runtime: Runtime, provider: BillingProvider | None = None) -> FastAPI:
    """The dashboard app; every route checks the CSRF token on POST."""
    app = FastAPI(
        telemetry=NO_TELEMETRY,
        title="adbtd dashboard",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(verify_csrf)],
    )
    app.state.runtime = runtime
    app.state.billing = provider or make_billing_provider(runtime.settings)
    app.state.templates = make_templates()
    app.state.templates.env.globals["notices"] = NOTICES
    for module in ROUTE_MODULES:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_error_pages(app)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def _install_error_pages(app: FastAPI) -> None:
    async def login_required(request: Request, _exc: Exception) -> Response:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        if request.method != "GET":
            target = PREFIX + "/"
        from urllib.parse import urlencode

        return RedirectResponse(f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303)

    async def app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdbtdError)
        if isinstance(exc, CsrfRejected):
            return _error_page(request, 403, "Form expired", exc.message)
        if isinstance(exc, NotFound):
            return _error_page(request, 404, "Not found", "There is nothing here.")
        if isinstance(exc, BillingUnavailable):
            return _error_page(request, 502, "Payment provider unavailable", exc.message)
        return _error_page(request, 400, "Something is not right", exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return _error_page(request, 404, "Not found", "There is nothing here.")
        if exc.status_code == 405:
            return _error_page(request, 405, "Not allowed", "This page does not take that.")
        return _error_page(request, exc.status_code, "Error", str(exc.detail))

    async def bad_form(request: Request, _exc: Exception) -> Response:
        return _error_page(request, 400, "Something is not right", "The form was incomplete.")

    async def unexpected(request: Request, _exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", None) or "unknown"
        log.exception("dashboard error on %s %s", request.method, request.url.path)
        return _error_page(
            request, 500, "Unexpected error", f"Something broke on our side (request {request_id})."
        )

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(AdbtdError, app_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, bad_form)
    app.add_exception_handler(Exception, unexpected)


def _error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", status=status, title=title, message=message)
