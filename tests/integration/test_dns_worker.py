"""The DNS worker against a real local DNS server: what it picks up, when, and that it stops."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from adbtd.db.models import DedicatedIp, Domain
from adbtd.runtime import Runtime
from adbtd.settings import Settings
from adbtd.workers.dns import DnsWorker
from tests.conftest import Tenant
from tests.support.dns_seed import add_domain, add_ips, publish_correct_records
from tests.support.dns_server import DnsTestServer, running_dns_server

IPS = ("203.0.113.7", "203.0.113.8")
ZONE = "bl.example.test"


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with running_dns_server() as server:
        yield server


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], dns: DnsTestServer) -> Settings:
    return settings_factory(
        dns_resolvers=dns.address,
        dns_timeout_seconds=0.5,
        dns_attempts=1,
        dnsbl_zones=ZONE,
        dns_poll_seconds=0.1,
    )


def test_a_round_verifies_new_domains_and_checks_new_ips_once(
    runtime: Runtime, dns: DnsTestServer, tenant: Tenant
) -> None:
    add_ips(runtime, tenant.workspace_id, *IPS)
    seeded = add_domain(runtime, tenant.workspace_id, "acme.test", IPS)
    pending = add_domain(
        runtime, tenant.workspace_id, "later.test", IPS, status="pending_provision"
    )
    publish_correct_records(dns, seeded)
    dns.add(f"8.113.0.203.{ZONE}", "A", "127.0.0.2")

    worker = DnsWorker(runtime)
    first = worker.run_once()
    assert first.verified == [seeded.id]
    assert first.reputation_checked == 2
    assert first.published == []  # byo domains are the customer's to publish
    second = worker.run_once()
    assert (second.verified, second.reputation_checked) == ([], 0)

    with runtime.db.transaction() as session:
        domain = session.get(Domain, seeded.id)
        waiting = session.get(Domain, pending.id)
        flags = {
            ip.address: ip.reputation_flags
            for ip in session.query(DedicatedIp).filter(DedicatedIp.address.in_(IPS))
        }
    assert domain is not None and domain.status == "verified"
    assert waiting is not None and waiting.last_verified_at is None
    assert waiting.status == "pending_provision"
    assert flags["203.0.113.7"] is None
    assert [f["code"] for f in flags["203.0.113.8"] or []] == ["127.0.0.2"]


def test_the_thread_picks_up_a_new_domain_and_stops_promptly(
    runtime: Runtime, dns: DnsTestServer, tenant: Tenant
) -> None:
    add_ips(runtime, tenant.workspace_id, IPS[0])
    worker = DnsWorker(runtime)
    worker.start()
    try:
        seeded = add_domain(runtime, tenant.workspace_id, "acme.test", IPS[:1])
        publish_correct_records(dns, seeded)
        worker.wake()
        deadline = time.monotonic() + 10
        status = None
        while time.monotonic() < deadline and status != "verified":
            time.sleep(0.05)
            with runtime.db.transaction() as session:
                domain = session.get(Domain, seeded.id)
                status = domain.status if domain else None
        assert status == "verified"
    finally:
        started = time.monotonic()
        worker.stop()
        assert time.monotonic() - started < 5
