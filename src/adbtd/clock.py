"""Time in one place: aware UTC datetimes inside, ISO-8601 with milliseconds and Z outside."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def iso_ms(moment: datetime | None) -> str | None:
    """Format as ``2026-05-03T09:21:14.221Z`` (None stays None)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
