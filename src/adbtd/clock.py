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
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    # isoformat: twice as fast as strftime, and four-digit years below 1000 too.
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_iso(value: str) -> datetime:
    """The inverse of ``iso_ms`` (any ISO-8601 string; naive ones are taken as UTC)."""
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
