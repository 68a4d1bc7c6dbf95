"""IP reputation: assigned IPs against DNS blocklists, with when each listing starts and ends.

A blocklist is asked ``<reversed address>.<zone> A``: no answer means clean, an answer in
127.0.0.0/8 is a listing whose code says why, and its TXT gives a reason. Answers in
127.255.255.0/24 are the list refusing the query (Spamhaus: public resolver, over quota), which
like a timeout says nothing about the IP: the previous state for that list is kept.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adbtd.adapters.dns_resolver import DnsLookupError, DnsResolver, DnsTimeout
from adbtd.clock import iso_ms, utcnow
from adbtd.db.engine import Database
from adbtd.db.models import DedicatedIp, IpListing
from adbtd.services.node_state import LIVE_IP_STATUSES

LISTED_NETWORK = ipaddress.ip_network("127.0.0.0/8")
REFUSED_NETWORK = ipaddress.ip_network("127.255.255.0/24")
ZoneStatus = Literal["clean", "listed", "timeout", "error"]


@dataclass(frozen=True)
class ZoneCheck:
    """One blocklist's answer for one IP; ``listings`` are ``(code, reason)`` pairs."""

    zone: str
    status: ZoneStatus
    listings: tuple[tuple[str, str | None], ...] = ()
    error: str | None = None


@dataclass
class ReputationSummary:
    checked: int = 0
    listed: list[str] = field(default_factory=list)
    started: int = 0
    ended: int = 0
    undecided: list[str] = field(default_factory=list)  # ids no blocklist answered for


def reverse_name(address: str, zone: str) -> str:
    """``203.0.113.7`` → ``7.113.0.203.<zone>``; IPv6 by nibbles (RFC 5782)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        head = ".".join(reversed(str(ip).split(".")))
    else:
        head = ".".join(reversed(ip.exploded.replace(":", "")))
    return f"{head}.{zone.strip('.')}"


def check_zone(resolver: DnsResolver, address: str, zone: str) -> ZoneCheck:
    """Ask one blocklist about one address."""
    name = reverse_name(address, zone)
    try:
        codes = sorted(set(resolver.a(name)), key=ipaddress.ip_address)
        if not codes:
            return ZoneCheck(zone, "clean")
        refused = [c for c in codes if ipaddress.ip_address(c) in REFUSED_NETWORK]
        if refused:
            return ZoneCheck(zone, "error", error=f"{zone} refused the query ({refused[0]})")
        listed = [c for c in codes if ipaddress.ip_address(c) in LISTED_NETWORK]
        if not listed:
            return ZoneCheck(zone, "error", error=f"{zone} answered {codes[0]}, not a 127/8 code")
        reasons = resolver.txt(name)
    except DnsTimeout as exc:
        return ZoneCheck(zone, "timeout", error=str(exc))
    except DnsLookupError as exc:
        return ZoneCheck(zone, "error", error=str(exc))
    reason = "; ".join(reasons) if reasons else None
    return ZoneCheck(zone, "listed", tuple((code, reason) for code in listed))


def check_address(resolver: DnsResolver, address: str, zones: list[str]) -> list[ZoneCheck]:
    return [check_zone(resolver, address, zone) for zone in zones]


def ips_due(session: Session, *, now: datetime, interval_seconds: float) -> list[str]:
    """Assigned IPs never checked or checked longer ago than the interval."""
    cutoff = now - timedelta(seconds=interval_seconds)
    return list(
        session.scalars(
            select(DedicatedIp.id)
            .where(
                DedicatedIp.status.in_(LIVE_IP_STATUSES),
                or_(
                    DedicatedIp.last_reputation_at.is_(None),
                    DedicatedIp.last_reputation_at <= cutoff,
                ),
            )
            .order_by(DedicatedIp.last_reputation_at.is_not(None), DedicatedIp.address)
        )
    )


def check_reputation(
    db: Database, *, resolver: DnsResolver, zones: list[str], ip_ids: list[str] | None = None
) -> ReputationSummary:
    """Check the given (default: every assigned) IPs; DNS runs with no transaction open."""
    with db.transaction() as session:
        stmt = select(DedicatedIp.id, DedicatedIp.address).where(
            DedicatedIp.status.in_(LIVE_IP_STATUSES)
        )
        if ip_ids is not None:
            stmt = stmt.where(DedicatedIp.id.in_(ip_ids))
        targets = [(row.id, row.address) for row in session.execute(stmt)]
    answers = {ip_id: check_address(resolver, address, zones) for ip_id, address in targets}
    summary = ReputationSummary()
    with db.transaction() as session:
        now = utcnow()
        for ip_id, checks in answers.items():
            ip = session.get(DedicatedIp, ip_id)
            if ip is None:
                continue
            started, ended = record_checks(session, ip, checks, now=now)
            if not any(c.status in ("clean", "listed") for c in checks):
                summary.undecided.append(ip_id)
            summary.checked += 1
            summary.started += started
            summary.ended += ended
            if ip.reputation_flags:
                summary.listed.append(ip.address)
    return summary


def record_checks(
    session: Session, ip: DedicatedIp, checks: list[ZoneCheck], *, now: datetime
) -> tuple[int, int]:
    """Apply one round of answers to the IP's flags and listing history; (started, ended)."""
    definitive = {c.zone for c in checks if c.status in ("clean", "listed")}
    current = {(c.zone, code): reason for c in checks for code, reason in c.listings}
    open_rows = {
        (row.zone, row.code): row
        for row in session.scalars(
            select(IpListing).where(
                IpListing.address == ip.address, IpListing.delisted_at.is_(None)
            )
        )
    }
    started = ended = 0
    for key, reason in current.items():
        row = open_rows.get(key)
        if row is None:
            session.add(
                IpListing(
                    address=ip.address,
                    ip_id=ip.id,
                    workspace_id=ip.workspace_id,
                    zone=key[0],
                    code=key[1],
                    reason=reason,
                    listed_at=now,
                    last_seen_at=now,
                )
            )
            started += 1
        else:
            row.last_seen_at = now
            row.reason = reason
    for key, row in open_rows.items():
        if key not in current and key[0] in definitive:
            row.delisted_at = now
            ended += 1
    kept = [flag for flag in ip.reputation_flags or [] if flag.get("list") not in definitive]
    fresh = [
        _flag(zone, code, reason, open_rows.get((zone, code)), now)
        for (zone, code), reason in sorted(current.items())
    ]
    flags = kept + fresh
    ip.reputation_flags = flags or None
    if definitive:
        ip.last_reputation_at = now
    return started, ended


def forget_unwatched_lists(session: Session, *, zones: list[str], now: datetime) -> int:
    """Blocklists taken out of ``ADBTD_DNSBL_ZONES`` are no longer watched: their flags go and
    their open listings end now (they could not be seen to end otherwise). Returns how many
    listings ended."""
    watched = set(zones)
    stale = list(
        session.scalars(
            select(IpListing).where(
                IpListing.delisted_at.is_(None), IpListing.zone.not_in(watched or {""})
            )
        )
    )
    for row in stale:
        row.delisted_at = now
    for ip in session.scalars(select(DedicatedIp).where(DedicatedIp.reputation_flags.is_not(None))):
        flags = [f for f in ip.reputation_flags or [] if f.get("list") in watched]
        if len(flags) != len(ip.reputation_flags or []):
            ip.reputation_flags = flags or None
    return len(stale)


def _flag(
    zone: str, code: str, reason: str | None, row: IpListing | None, now: datetime
) -> dict[str, Any]:
    return {
        "list": zone,
        "code": code,
        "reason": reason,
        "listedAt": iso_ms(row.listed_at if row is not None else now),
    }


def listing_history(session: Session, *, address: str) -> list[IpListing]:
    """Every listing of an address, newest first, open ones with ``delisted_at`` None."""
    return list(
        session.scalars(
            select(IpListing)
            .where(IpListing.address == address)
            .order_by(IpListing.listed_at.desc(), IpListing.zone, IpListing.code)
        )
    )
