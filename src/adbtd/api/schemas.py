"""Shared API schema pieces: the success and error envelopes and the camelCase base model."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class OutModel(BaseModel):
    """Response models: snake_case in Python, camelCase on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class InModel(BaseModel):
    """Request models: extra fields and type coercion are refused (400)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Envelope(BaseModel, Generic[T]):
    data: T


class ErrorBody(BaseModel):
    code: str
    message: str
    model_config = ConfigDict(extra="allow")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


ERROR_DESCRIPTIONS = {
    400: "validation_error",
    401: "unauthorized",
    402: "payment_required",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    429: "rate_limited",
    500: "internal_error",
    502: "smtp_error or imap_error",
    503: "inventory_unavailable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for the error statuses a route can return (always 400/401/429/500)."""
    wanted = sorted({400, 401, 429, 500, *statuses})
    return {
        status: {"model": ErrorEnvelope, "description": ERROR_DESCRIPTIONS[status]}
        for status in wanted
    }
