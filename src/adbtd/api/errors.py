"""The error envelope ``{"error": {"code", "message", ...}}`` and the HTTP status of each code."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from adbtd.errors import AdbtdError
from adbtd.services.ratelimit import Decision

STATUS_BY_CODE = {
    "validation_error": 400,
    "unauthorized": 401,
    "payment_required": 402,
    "not_found": 404,
    "method_not_allowed": 405,
    "csrf_rejected": 403,
    "conflict": 409,
    "payload_too_large": 413,
    "rate_limited": 429,
    "internal_error": 500,
    "smtp_error": 502,
    "imap_error": 502,
    "billing_unavailable": 502,
    "inventory_unavailable": 503,
}
CODE_BY_HTTP_STATUS = {
    400: "validation_error",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
}
MAX_VALIDATION_DETAILS = 20
# Room for the largest send (text + html up to 5,000,000 bytes) even as JSON with every
# character escaped (\uXXXX, surrogate pairs for emoji): larger bodies are refused unread.
MAX_BODY_BYTES = 16 * 1024 * 1024


def error_response(
    code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    status = STATUS_BY_CODE.get(code, 500)  # a code without a status is a bug: still an envelope
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def validation_details(errors: list[Any]) -> list[dict[str, str]]:
    """Pydantic errors as ``{field, message}`` pairs, without echoing the input back."""
    details = []
    for err in errors[:MAX_VALIDATION_DETAILS]:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body",)]
        details.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", ""))})
    return details


async def _on_app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AdbtdError)
    headers = None
    if "retry_after" in exc.extra:
        headers = {"Retry-After": str(exc.extra.pop("retry_after"))}
    return error_response(exc.code, exc.message, headers=headers, **exc.extra)


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = validation_details(list(exc.errors()))
    if any(d["message"].startswith("JSON decode error") for d in details):
        return error_response("validation_error", "request body is not valid JSON")
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
    return error_response("validation_error", summary or "invalid request", details=details)


async def _on_http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = CODE_BY_HTTP_STATUS.get(exc.status_code, "validation_error")
    message = {
        404: "no such route",
        405: "method not allowed on this route",
        413: f"request body over {MAX_BODY_BYTES} bytes",
    }.get(exc.status_code, str(exc.detail))
    headers = dict(exc.headers) if exc.headers else None
    return error_response(code, message, headers=headers)


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """The ``RateLimit-*`` headers every authenticated response carries."""
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_seconds),
    }


async def _on_unexpected(request: Request, _exc: Exception) -> JSONResponse:
    """The envelope for a bug; the traceback is logged by the request middleware, never sent.
    Answered outside the guard middleware, so the rate headers are added here."""
    request_id = getattr(request.state, "request_id", None)
    decision = getattr(request.state, "rate_limit", None)
    headers = rate_limit_headers(decision) if isinstance(decision, Decision) else None
    return error_response(
        "internal_error", "unexpected server error", headers=headers, requestId=request_id
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_exception_handler(AdbtdError, _on_app_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
