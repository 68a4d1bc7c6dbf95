"""Publish the records of bought (managed) domains through the DNS-hosting port.

What was last published is kept in ``Domain.dns_results["published"]`` as a digest, so the DNS
worker republishes a zone exactly when its records change (an IP added or released, a new key).
Like verification, the hosting call runs with no database transaction open.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select

from adbtd.adapters.dns_hosting import DnsHosting, HostedRecord
from adbtd.clock import iso_ms, utcnow
from adbtd.db.engine import Database
from adbtd.db.models import Domain
from adbtd.errors import NotFound
from adbtd.services.dns_records import RequiredRecord, required_records
from adbtd.services.dns_verify import (
    UNVERIFIABLE_STATUSES,
    expected_dkim_record,
    workspace_ips,
    workspace_mx_hostname,
)
from adbtd.settings import Settings

PUBLISHED_KEY = "published"


@dataclass(frozen=True)
class ZonePlan:
    domain_id: str
    zone: str
    records: tuple[HostedRecord, ...]
    digest: str


def hosted(records: list[RequiredRecord]) -> tuple[HostedRecord, ...]:
    return tuple(HostedRecord(r.name, r.type, r.value) for r in records)


def digest(records: tuple[HostedRecord, ...]) -> str:
    rows = sorted((r.name, r.type, r.value, r.ttl) for r in records)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def plan_zone(db: Database, *, domain_id: str, settings: Settings) -> ZonePlan | None:
    """The zone a managed domain should have; None for a domain we do not host or not yet."""
    with db.transaction() as session:
        domain = session.get(Domain, domain_id)
        if domain is None:
            raise NotFound("domain not found")
        if not domain.managed or domain.status in UNVERIFIABLE_STATUSES:
            return None
        records = hosted(
            required_records(
                domain=domain.name,
                ips=workspace_ips(session, domain.workspace_id),
                dkim_selector=domain.dkim_selector,
                dkim_record=expected_dkim_record(domain, secret_key=settings.secret_key),
                mx_hostname=workspace_mx_hostname(session, settings, domain.workspace_id),
            )
        )
        return ZonePlan(domain.id, domain.name, records, digest(records))


def publish_domain(
    db: Database, *, domain_id: str, settings: Settings, hosting: DnsHosting
) -> bool:
    """Publish a managed domain's records now; False when the domain is not ours to publish.

    Call after a ``mode=buy`` domain is provisioned; the DNS worker also does it on its own.
    """
    plan = plan_zone(db, domain_id=domain_id, settings=settings)
    if plan is None:
        return False
    hosting.publish_zone(plan.zone, plan.records)
    with db.transaction() as session:
        domain = session.get(Domain, domain_id, with_for_update=True)
        if domain is None:
            hosting.delete_zone(plan.zone)
            return False
        results = dict(domain.dns_results or {})
        results[PUBLISHED_KEY] = {"digest": plan.digest, "at": iso_ms(utcnow())}
        domain.dns_results = results
    return True


def unpublish_domain(hosting: DnsHosting, *, name: str) -> None:
    """Remove a domain's zone from the DNS host; call when a domain is deleted."""
    hosting.delete_zone(name)


def domains_to_publish(db: Database, *, settings: Settings, compare: bool = True) -> list[str]:
    """Managed domains never published, or (``compare``) whose records changed since."""
    with db.transaction() as session:
        rows = list(
            session.execute(
                select(Domain.id, Domain.dns_results).where(
                    Domain.managed.is_(True), Domain.status.not_in(UNVERIFIABLE_STATUSES)
                )
            )
        )
    due: list[str] = []
    for domain_id, results in rows:
        published = (results or {}).get(PUBLISHED_KEY) or {}
        if not published:
            due.append(domain_id)
            continue
        if not compare:
            continue
        plan = plan_zone(db, domain_id=domain_id, settings=settings)
        if plan is not None and published.get("digest") != plan.digest:
            due.append(domain_id)
    return due


def remove_orphan_zones(db: Database, *, hosting: DnsHosting) -> list[str]:
    """Delete hosted zones whose managed domain is gone (deleted while the host was down)."""
    zones = hosting.list_zones()
    if not zones:
        return []
    with db.transaction() as session:
        names = set(session.scalars(select(Domain.name).where(Domain.managed.is_(True))))
    orphans = [zone for zone in zones if zone not in names]
    for zone in orphans:
        hosting.delete_zone(zone)
    return orphans
