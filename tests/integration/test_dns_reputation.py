"""IP reputation against a DNSBL zone served by a real local DNS server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from adbtd.adapters.dns_hosting import LocalDnsHosting
from adbtd.adapters.dns_resolver import build_resolver
from adbtd.db.models import DedicatedIp
from adbtd.runtime import Runtime
from adbtd.services.reputation import check_reputation, listing_history, reverse_name
from adbtd.settings import Settings
from adbtd.workers.dns import DnsWorker
from tests.conftest import Tenant
from tests.support.dns_seed import add_ips
from tests.support.dns_server import DnsTestServer, running_dns_server

LISTED = "203.0.113.7"
CLEAN = "203.0.113.8"
ZEN = "zen.spamhaus.test"
OTHER = "bl.example.test"
REASON = "Listed by SBL, see https://check.spamhaus.org/sbl/query/SBL1"


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with running_dns_server() as server:
        yield server


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], dns: DnsTestServer) -> Settings:
    return settings_factory(
        dns_resolvers=dns.address,
        dns_timeout_seconds=0.3,
        dns_attempts=1,
        dnsbl_zones=f"{ZEN}, {OTHER}",
    )


def run(runtime: Runtime) -> None:
    check_reputation(
        runtime.db,
        resolver=build_resolver(runtime.settings),
        zones=runtime.settings.dnsbl_zone_list,
    )


def ip_row(runtime: Runtime, address: str) -> DedicatedIp:
    with runtime.db.transaction() as session:
        row = session.query(DedicatedIp).filter_by(address=address).one()
        session.expunge(row)
        return row


def test_reverse_names() -> None:
    assert reverse_name("203.0.113.7", "zen.spamhaus.org") == "7.113.0.203.zen.spamhaus.org"
    assert reverse_name("2001:db8::1", "x.test.").startswith("1.0.0.0.0.0.0.0")
    assert reverse_name("2001:db8::1", "x.test.").endswith("8.b.d.0.1.0.0.2.x.test")


def test_listed_and_clean_ips(
    runtime: Runtime, dns: DnsTestServer, tenant: Tenant, client: TestClient
) -> None:
    add_ips(runtime, tenant.workspace_id, LISTED, CLEAN)
    dns.add(f"7.113.0.203.{ZEN}", "A", "127.0.0.2", "127.0.0.4")
    dns.add(f"7.113.0.203.{ZEN}", "TXT", REASON)
    run(runtime)

    listed, clean = ip_row(runtime, LISTED), ip_row(runtime, CLEAN)
    assert clean.reputation_flags is None
    assert clean.last_reputation_at is not None
    assert listed.last_reputation_at is not None
    flags = listed.reputation_flags or []
    assert [(f["list"], f["code"], f["reason"]) for f in flags] == [
        (ZEN, "127.0.0.2", REASON),
        (ZEN, "127.0.0.4", REASON),
    ]
    assert (f"7.113.0.203.{OTHER}", "A", "udp") in dns.queries

    response = client.get("/api/v1/ips", headers=tenant.headers)
    assert response.status_code == 200, response.text
    shown = {ip["address"]: ip for ip in response.json()["data"]}
    assert shown[CLEAN]["reputationFlags"] is None
    assert shown[LISTED]["reputationFlags"][0]["code"] == "127.0.0.2"
    assert shown[LISTED]["lastReputationAt"] is not None


def test_listing_start_and_end_are_recorded(
    runtime: Runtime, dns: DnsTestServer, tenant: Tenant
) -> None:
    add_ips(runtime, tenant.workspace_id, LISTED)
    name = f"7.113.0.203.{ZEN}"
    dns.add(name, "A", "127.0.0.2")
    run(runtime)
    run(runtime)
    with runtime.db.transaction() as session:
        (open_listing,) = listing_history(session, address=LISTED)
        assert open_listing.delisted_at is None
        assert open_listing.last_seen_at > open_listing.listed_at
        assert open_listing.reason is None

    dns.remove(name, "A")
    run(runtime)
    assert ip_row(runtime, LISTED).reputation_flags is None
    with runtime.db.transaction() as session:
        (ended,) = listing_history(session, address=LISTED)
        assert ended.delisted_at is not None and ended.delisted_at > ended.listed_at

    dns.add(name, "A", "127.0.0.3")
    run(runtime)
    with runtime.db.transaction() as session:
        history = listing_history(session, address=LISTED)
    assert [(h.code, h.delisted_at is None) for h in history] == [
        ("127.0.0.3", True),
        ("127.0.0.2", False),
    ]


def test_a_timeout_or_refusal_keeps_the_previous_state(
    runtime: Runtime, dns: DnsTestServer, tenant: Tenant
) -> None:
    add_ips(runtime, tenant.workspace_id, LISTED)
    name = f"7.113.0.203.{ZEN}"
    dns.add(name, "A", "127.0.0.2")
    run(runtime)
    first = ip_row(runtime, LISTED)

    dns.silent.add(name)
    run(runtime)
    after_timeout = ip_row(runtime, LISTED)
    assert after_timeout.reputation_flags == first.reputation_flags
    with runtime.db.transaction() as session:
        assert listing_history(session, address=LISTED)[0].delisted_at is None

    dns.silent.clear()
    dns.replace(name, "A", "127.255.255.254")  # Spamhaus: query through a public resolver
    run(runtime)
    assert ip_row(runtime, LISTED).reputation_flags == first.reputation_flags
    with runtime.db.transaction() as session:
        assert listing_history(session, address=LISTED)[0].delisted_at is None


def test_a_list_taken_out_of_the_settings_leaves_no_flags(
    runtime: Runtime,
    dns: DnsTestServer,
    tenant: Tenant,
    settings_factory: Callable[..., Settings],
) -> None:
    add_ips(runtime, tenant.workspace_id, LISTED)
    dns.add(f"7.113.0.203.{ZEN}", "A", "127.0.0.2")
    dns.add(f"7.113.0.203.{OTHER}", "A", "127.0.0.9")
    run(runtime)
    assert {f["list"] for f in ip_row(runtime, LISTED).reputation_flags or []} == {ZEN, OTHER}
    only_other = Runtime(
        settings=settings_factory(dns_resolvers=dns.address, dnsbl_zones=OTHER), db=runtime.db
    )
    DnsWorker(only_other, hosting=LocalDnsHosting()).run_once()
    assert [f["list"] for f in ip_row(runtime, LISTED).reputation_flags or []] == [OTHER]
    with runtime.db.transaction() as session:
        ended = {
            h.zone: h.delisted_at is not None for h in listing_history(session, address=LISTED)
        }
    assert ended == {ZEN: True, OTHER: False}
    none = Runtime(settings=settings_factory(dnsbl_zones=""), db=runtime.db)
    DnsWorker(none, hosting=LocalDnsHosting()).run_once()
    assert ip_row(runtime, LISTED).reputation_flags is None


def test_an_ip_no_list_answers_for_waits_before_it_is_asked_again(
    runtime: Runtime, dns: DnsTestServer, tenant: Tenant
) -> None:
    add_ips(runtime, tenant.workspace_id, LISTED)
    dns.silent.update({f"7.113.0.203.{ZEN}", f"7.113.0.203.{OTHER}"})
    worker = DnsWorker(runtime, hosting=LocalDnsHosting())
    assert worker.run_once().reputation_checked == 1
    assert ip_row(runtime, LISTED).last_reputation_at is None  # nothing was learnt
    asked = len(dns.queries)
    assert worker.run_once().reputation_checked == 0  # within ADBTD_DNS_RETRY_SECONDS
    assert [q for q in dns.queries[asked:] if "203" in q[0]] == []
