"""The platform's one error tree; each error carries a stable ``code`` the API turns into HTTP.

    AdbtdError
    ├── ValidationFailed      validation_error        400
    ├── Unauthorized          unauthorized            401
    ├── PaymentRequired       payment_required        402  (+ checkoutUrl)
    ├── NotFound              not_found               404
    ├── Conflict              conflict                409
    ├── RateLimited           rate_limited            429  (+ retry_after)
    ├── SmtpFailure           smtp_error              502
    ├── ImapFailure           imap_error              502
    └── InventoryUnavailable  inventory_unavailable   503

Services raise these; only the API layer knows the status codes (``adbtd.api.errors``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class AdbtdError(Exception):
    """Base of every expected failure; ``extra`` fields are added to the error envelope."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class ValidationFailed(AdbtdError):
    code = "validation_error"


class Unauthorized(AdbtdError):
    code = "unauthorized"


class PaymentRequired(AdbtdError):
    code = "payment_required"


class NotFound(AdbtdError):
    code = "not_found"


class Conflict(AdbtdError):
    code = "conflict"


class RateLimited(AdbtdError):
    code = "rate_limited"


class SmtpFailure(AdbtdError):
    code = "smtp_error"


class ImapFailure(AdbtdError):
    code = "imap_error"


class InventoryUnavailable(AdbtdError):
    code = "inventory_unavailable"
