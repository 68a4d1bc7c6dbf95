"""``POST /webhooks/stripe``: signed events from the billing provider (no session, no CSRF)."""

from __future__ import annotations

import logging

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from adbtd.adapters.billing import BillingProvider
from adbtd.errors import AdbtdError, BillingUnavailable, WebhookRejected
from adbtd.runtime import Runtime
from adbtd.services import billing_flows

log = logging.getLogger("adbtd.billing")
MAX_WEBHOOK_BYTES = 512 * 1024


def webhook_router(provider: BillingProvider) -> APIRouter:
    """The router the root app includes; the provider is the dashboard's."""
    router = APIRouter(include_in_schema=False)

    @router.post("/webhooks/stripe")
    async def stripe_webhook(request: Request) -> JSONResponse:
        payload = await request.body()
        if len(payload) > MAX_WEBHOOK_BYTES:
            return _error(400, "payload too large")
        runtime: Runtime = request.app.state.runtime
        try:
            event = provider.parse_event(
                payload=payload, signature=request.headers.get("stripe-signature")
            )
            outcome = await anyio.to_thread.run_sync(
                billing_flows.handle_event, runtime.db, provider, runtime.settings, event
            )
        except WebhookRejected as exc:
            return _error(400, exc.message)
        except BillingUnavailable as exc:
            log.warning("webhook %s could not be handled yet: %s", "stripe", exc.message)
            return _error(503, exc.message)
        except AdbtdError as exc:
            return _error(400, exc.message)
        log.info("webhook %s %s: %s", event.event_id, event.kind, outcome)
        return JSONResponse({"received": True, "outcome": outcome})

    return router


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)
