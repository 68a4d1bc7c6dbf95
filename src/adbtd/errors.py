"""The platform's one error tree; each error carries a stable ``code`` the API turns into HTTP.

    AdbtdError
    ├── ValidationFailed      validation_error        400
    ├── Unauthorized          unauthorized            401
    ├── PaymentRequired       payment_required        402  (+ checkoutUrl)
    ├── NotFound              not_found               404
    ├── Conflict              conflict                409
    ├── CsrfRejected          csrf_rejected           403  (dashboard forms)
    ├── RateLimited           rate_limited            429  (+ retry_after)
    │   └── LoginLimited      rate_limited            429  (dashboard sign-in attempts)
    ├── SmtpFailure           smtp_error              502
    ├── ImapFailure           imap_error              502
    ├── BillingUnavailable    billing_unavailable     502  (the provider failed)
    ├── WebhookRejected       validation_error        400  (bad provider webhook)
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


class CsrfRejected(AdbtdError):
    """A dashboard POST without the token of this browser's session."""

    code = "csrf_rejected"


class LoginLimited(RateLimited):
    """Too many failed sign-ins for this account or address; ``retry_after`` in seconds."""


class BillingUnavailable(AdbtdError):
    """The billing provider refused or could not be reached; nothing was recorded locally."""

    code = "billing_unavailable"


class WebhookRejected(AdbtdError):
    """A webhook whose signature, timestamp or body does not check out."""

    code = "validation_error"
