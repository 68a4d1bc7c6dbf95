"""Verify a domain's published records against what the platform needs, and keep the result.

Verification reads a snapshot in one short transaction, asks DNS with no transaction open (a
slow resolver must never hold the database), then writes the outcome in a second transaction.
A timeout or server failure is not a verdict on the record: its flag stays as it was, the
result says ``timeout``/``dns_error`` and the worker retries it soon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from adbtd.adapters.dns_resolver import DnsLookupError, DnsResolver, DnsTimeout
from adbtd.clock import iso_ms, parse_iso, utcnow
from adbtd.db.engine import Database
from adbtd.db.models import DedicatedIp, Domain
from adbtd.errors import NotFound
from adbtd.mailnode.keys import dkim_public_record
from adbtd.services.dns_records import (
    CHECKS,
    Check,
    CheckOutcome,
    check_dkim,
    check_dmarc,
    check_mx,
    check_spf,
    required_records,
)
from adbtd.services.inventory import workspace_node
from adbtd.services.node_state import DKIM_KEY_PURPOSE, LIVE_IP_STATUSES
from adbtd.services.secretbox import SecretBox
from adbtd.settings import Settings

VERIFIED = "verified"
UNVERIFIED = "unverified"
# Domains not yet provisioned (or given up on) are left alone: their status is the order's.
UNVERIFIABLE_STATUSES = frozenset({"pending_provision", "provisioning", "failed", "deleting"})
FLAG_COLUMNS: dict[Check, str] = {
    "mx": "mx_ok",
    "spf": "spf_ok",
    "dkim": "dkim_ok",
    "dmarc": "dmarc_ok",
}
Status = Literal["ok", "fail", "timeout", "dns_error"]
TEMPORARY: frozenset[str] = frozenset({"timeout", "dns_error"})
DEFAULT_OUTAGE_GRACE = timedelta(hours=24)


@dataclass(frozen=True)
class DomainSnapshot:
    """What a check needs to know about a domain, read before any DNS traffic."""

    id: str
    name: str
    workspace_id: str
    managed: bool
    dkim_selector: str
    dkim_record: str | None
    ips: tuple[str, ...]
    node: str | None  # the mail node of the workspace's IPs (None while it holds none)


@dataclass(frozen=True)
class RecordResult:
    status: Status
    error: str | None
    found: tuple[str, ...]


def workspace_ips(session: Session, workspace_id: str) -> list[str]:
    """The workspace's assigned dedicated IPs, sorted."""
    return sorted(
        session.scalars(
            select(DedicatedIp.address).where(
                DedicatedIp.workspace_id == workspace_id,
                DedicatedIp.status.in_(LIVE_IP_STATUSES),
            )
        )
    )


def expected_dkim_record(domain: Domain, *, secret_key: str) -> str | None:
    """The DKIM TXT value for the key the platform holds for ``domain`` (None without a key)."""
    if not domain.dkim_private_key_encrypted:
        return None
    pem = SecretBox(secret_key, DKIM_KEY_PURPOSE).open(domain.dkim_private_key_encrypted)
    return dkim_public_record(pem)


def snapshot(session: Session, domain: Domain, *, secret_key: str) -> DomainSnapshot:
    return DomainSnapshot(
        id=domain.id,
        name=domain.name,
        workspace_id=domain.workspace_id,
        managed=domain.managed,
        dkim_selector=domain.dkim_selector,
        dkim_record=expected_dkim_record(domain, secret_key=secret_key),
        ips=tuple(workspace_ips(session, domain.workspace_id)),
        node=workspace_node(session, workspace_id=domain.workspace_id),
    )


def workspace_mx_hostname(session: Session, settings: Settings, workspace_id: str) -> str:
    """The inbound host name of the workspace's node ("" when MX should be ``mail.<domain>``)."""
    return settings.mx_hostname_for(workspace_node(session, workspace_id=workspace_id))


def node_hosts(settings: Settings, node: str | None) -> tuple[str, ...]:
    """Host names an MX may name directly: the node's MX host name and its mail host name."""
    hosts = (settings.mx_hostname_for(node), settings.mail_hostname)
    return tuple(h for h in hosts if h.strip())


def run_checks(
    snap: DomainSnapshot, resolver: DnsResolver, *, hosts: tuple[str, ...]
) -> dict[Check, RecordResult]:
    """The four checks against DNS; each one's timeout stays its own."""
    ips = list(snap.ips)
    dkim_name = f"{snap.dkim_selector}._domainkey.{snap.name}"
    dmarc_name = f"_dmarc.{snap.name}"
    runs: dict[Check, Callable[[], CheckOutcome]] = {
        "mx": lambda: check_mx(snap.name, ips, hosts, resolver),
        "spf": lambda: check_spf(snap.name, ips, resolver),
        "dkim": lambda: check_dkim(dkim_name, resolver.txt(dkim_name), snap.dkim_record),
        "dmarc": lambda: check_dmarc(dmarc_name, resolver.txt(dmarc_name)),
    }
    return {check: _run_one(run) for check, run in runs.items()}


def _run_one(run: Callable[[], CheckOutcome]) -> RecordResult:
    try:
        outcome = run()
    except DnsTimeout as exc:
        return RecordResult("timeout", f"DNS timeout ({exc}); will retry", ())
    except DnsLookupError as exc:
        return RecordResult("dns_error", f"DNS failure ({exc}); will retry", ())
    return RecordResult("ok" if outcome.ok else "fail", outcome.error, outcome.found)


def apply_results(
    domain: Domain,
    results: dict[Check, RecordResult],
    *,
    now: datetime,
    outage_grace: timedelta = DEFAULT_OUTAGE_GRACE,
) -> dict[str, Any]:
    """Set the flags, status, ``dns_results`` and ``last_verified_at`` on the row.

    A timeout keeps the record's flag as it was, but not for ever: once DNS has not answered for
    it during ``outage_grace`` (its name servers gone, say), the record counts as failing."""
    previous = dict(domain.dns_results or {})
    stamp = iso_ms(now) or ""
    for check, result in results.items():
        column = FLAG_COLUMNS[check]
        last = previous.get(check)
        found = list(result.found)
        error = result.error
        entry: dict[str, Any] = {}
        if result.status in TEMPORARY:
            since = _temporary_since(last, stamp)
            entry["temporarySince"] = since
            if isinstance(last, dict):
                found = list(last.get("found") or [])  # what DNS held when it last answered
            if now - parse_iso(since) >= outage_grace:
                setattr(domain, column, False)
                error = f"no DNS answer for this record since {since}; counted as failing"
        else:
            setattr(domain, column, result.status == "ok")
        previous[check] = {
            "status": result.status,
            "ok": bool(getattr(domain, column)),
            "error": error,
            "found": found,
            "checkedAt": stamp,
            **entry,
        }
    previous["checkedAt"] = stamp
    domain.dns_results = previous
    domain.last_verified_at = now
    if domain.status not in UNVERIFIABLE_STATUSES:
        all_ok = all(getattr(domain, FLAG_COLUMNS[c]) for c in CHECKS)
        domain.status = VERIFIED if all_ok else UNVERIFIED
    return previous


def _temporary_since(last: object, stamp: str) -> str:
    """When the current run of timeouts for a record began (``stamp`` if it begins now)."""
    if isinstance(last, dict) and last.get("status") in TEMPORARY:
        since = last.get("temporarySince") or last.get("checkedAt")
        if isinstance(since, str):
            return since
    return stamp


def verify_domain(
    db: Database,
    *,
    domain_id: str,
    settings: Settings,
    resolver: DnsResolver,
    managed_resolver: DnsResolver | None = None,
) -> Domain:
    """Check one domain now and store the outcome; NotFound when it is gone.

    A managed (bought) domain is checked through ``managed_resolver`` when one is given.
    """
    with db.transaction() as session:
        domain = session.get(Domain, domain_id)
        if domain is None:
            raise NotFound("domain not found")
        snap = snapshot(session, domain, secret_key=settings.secret_key)
    chosen = managed_resolver if snap.managed and managed_resolver is not None else resolver
    results = run_checks(snap, chosen, hosts=node_hosts(settings, snap.node))
    with db.transaction() as session:
        domain = session.get(Domain, domain_id, with_for_update=True)
        if domain is None:
            raise NotFound("domain not found")
        grace = timedelta(seconds=settings.dns_outage_grace_seconds)
        apply_results(domain, results, now=utcnow(), outage_grace=grace)
        return domain


def has_temporary_failure(domain_results: dict[str, Any] | None) -> bool:
    """Whether the last check of any record timed out or hit a DNS failure."""
    results = domain_results or {}
    return any(
        isinstance(results.get(c), dict) and results[c].get("status") in TEMPORARY for c in CHECKS
    )


def domains_due(
    session: Session, *, now: datetime, interval_seconds: float, retry_seconds: float
) -> list[str]:
    """Domains never checked, due by schedule, or whose last check hit a timeout."""
    due: list[tuple[datetime | None, str]] = []
    soonest = now - timedelta(seconds=min(interval_seconds, retry_seconds))
    rows = session.execute(
        select(Domain.id, Domain.last_verified_at, Domain.dns_results).where(
            Domain.status.not_in(UNVERIFIABLE_STATUSES),
            or_(Domain.last_verified_at.is_(None), Domain.last_verified_at <= soonest),
        )
    )
    for domain_id, last, results in rows:
        if (
            last is None
            or last <= now - timedelta(seconds=interval_seconds)
            or (has_temporary_failure(results) and last <= now - timedelta(seconds=retry_seconds))
        ):
            due.append((last, domain_id))
    due.sort(key=lambda item: (item[0] is not None, item[0] or now))
    return [domain_id for _, domain_id in due]


def dns_records_out(
    session: Session, domain: Domain, *, settings: Settings
) -> list[dict[str, Any]]:
    """``dnsRecords`` of ``GET /domains/:id``: every record to publish with ``ok`` and ``error``."""
    results = domain.dns_results or {}
    out: list[dict[str, Any]] = []
    for record in required_records(
        domain=domain.name,
        ips=workspace_ips(session, domain.workspace_id),
        dkim_selector=domain.dkim_selector,
        dkim_record=expected_dkim_record(domain, secret_key=settings.secret_key),
        mx_hostname=workspace_mx_hostname(session, settings, domain.workspace_id),
    ):
        ok = bool(getattr(domain, FLAG_COLUMNS[record.check]))
        result = results.get(record.check)
        status = result.get("status") if isinstance(result, dict) else None
        error = result.get("error") if isinstance(result, dict) else None
        if ok and status not in TEMPORARY:
            error = None
        elif error is None and not ok:
            error = "not checked yet"
        out.append(
            {
                "type": record.type,
                "name": record.name,
                "value": record.value,
                "ok": ok,
                "status": status or "unchecked",
                "error": error,
            }
        )
    return out


def domain_out(session: Session, domain: Domain, *, settings: Settings) -> dict[str, Any]:
    """The domain as the API shows it, with its DNS records and their verification state."""
    return {
        "id": domain.id,
        "name": domain.name,
        "mode": domain.mode,
        "status": domain.status,
        "spfOk": domain.spf_ok,
        "dkimOk": domain.dkim_ok,
        "dmarcOk": domain.dmarc_ok,
        "mxOk": domain.mx_ok,
        "dkimSelector": domain.dkim_selector,
        "createdAt": iso_ms(domain.created_at),
        "lastVerifiedAt": iso_ms(domain.last_verified_at),
        "dnsRecords": dns_records_out(session, domain, settings=settings),
    }
