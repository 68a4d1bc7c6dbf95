"""The ASGI application: the v1 API mounted at ``/api/v1`` beside the dashboard."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from adbtd import __version__
from adbtd.api.errors import CODE_BY_HTTP_STATUS, error_response, install_error_handlers
from adbtd.api.middleware import ApiGuardMiddleware, RequestContextMiddleware
from adbtd.api.routes import domain_verify, domains, ips, mailboxes, me, messages, orders
from adbtd.asgi import NO_TELEMETRY
from adbtd.dashboard import create_dashboard, webhook_router
from adbtd.runtime import Runtime

API_PREFIX = "/api/v1"
DASHBOARD_PREFIX = "/dashboard"


def create_api(runtime: Runtime) -> FastAPI:
    """The v1 API alone; every failure inside it answers with the error envelope."""
    api = FastAPI(
        title="adbtd API",
        version=__version__,
        description="Domains, dedicated IPs and mailboxes; send and read mail through the "
        "tenant's own SMTP and IMAP servers.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        servers=[{"url": API_PREFIX}],
        telemetry=NO_TELEMETRY,
    )
    api.state.runtime = runtime
    install_error_handlers(api)
    # Routers are matched in order for every request: the latency-critical mail routes first.
    for router in (
        messages.router,
        me.router,
        domains.router,
        domain_verify.router,
        ips.router,
        mailboxes.router,
        orders.router,
    ):
        api.include_router(router)
    api.add_middleware(ApiGuardMiddleware, runtime=runtime)
    declare_bearer_auth(api)
    return api


def drop_unreachable_422(schema: dict[str, Any]) -> None:
    """FastAPI documents 422 on every route with parameters; this API answers 400 instead."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def declare_bearer_auth(api: FastAPI) -> None:
    """Say in the OpenAPI spec what the guard middleware enforces: a Bearer key on every route."""
    build = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "adbtd_live_ followed by 43 URL-safe characters",
                }
            }
            schema["security"] = [{"bearerAuth": []}]
            drop_unreachable_422(schema)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]


def create_app(runtime: Runtime) -> FastAPI:
    """The whole HTTP surface of ``adbtd serve``."""
    app = FastAPI(
        title="adbtd",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        telemetry=NO_TELEMETRY,
    )
    app.state.runtime = runtime
    app.mount(API_PREFIX, create_api(runtime))
    dashboard = create_dashboard(runtime)
    app.mount(DASHBOARD_PREFIX, dashboard)
    app.include_router(webhook_router(dashboard.state.billing))

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(DASHBOARD_PREFIX + "/")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})

    app.add_exception_handler(StarletteHTTPException, _api_envelope_outside_mount)
    app.add_middleware(RequestContextMiddleware)
    return app


async def _api_envelope_outside_mount(request: Request, exc: Exception) -> Response:
    """An ``/api/v1`` path the mount cannot match (``%0A`` in an id) still gets the envelope."""
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith(API_PREFIX + "/") or request.url.path == API_PREFIX:
        code = CODE_BY_HTTP_STATUS.get(exc.status_code, "not_found")
        return error_response(code, "no such route")
    return await http_exception_handler(request, exc)
