"""Bought domains end to end: published into a real PowerDNS (SQLite backend), verified, removed."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from adbtd.adapters.dns_hosting import DnsHostingError, HostedRecord
from adbtd.adapters.dns_resolver import DnsServerFailure, build_resolver
from adbtd.adapters.pdns import PowerDnsHosting
from adbtd.adapters.pdns_server import PowerDnsServer, pdns_installed
from adbtd.cli.serve import background_components, start_components, stop_components
from adbtd.db.models import Domain
from adbtd.runtime import Runtime
from adbtd.services import dns_publish
from adbtd.settings import Settings
from adbtd.workers.dns import DnsWorker
from tests.conftest import Tenant
from tests.support.dns_seed import SELECTOR, add_domain, add_ips
from tests.support.postgres import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not pdns_installed(), reason="pdns-server is not installed"),
]

IP = "203.0.113.7"


@pytest.fixture(scope="module")
def pdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PowerDnsServer]:
    server = PowerDnsServer(
        tmp_path_factory.mktemp("pdns"),
        api_key=secrets.token_urlsafe(16),
        dns_port=free_port(),
        api_port=free_port(),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], pdns: PowerDnsServer) -> Settings:
    return settings_factory(
        dns_resolvers=pdns.dns_address,
        dns_timeout_seconds=2,
        dns_hosting_provider="pdns",
        pdns_api_url=pdns.api_url,
        pdns_api_key=pdns.api_key,
        dnsbl_zones="",
    )


def zone_name() -> str:
    return f"b{secrets.token_hex(4)}.test"


def test_publish_replace_and_delete_a_zone(pdns: PowerDnsServer) -> None:
    hosting = PowerDnsHosting(pdns.api_url, pdns.api_key)
    zone = zone_name()
    long_txt = "v=DKIM1; k=rsa; p=" + "A" * 400
    hosting.publish_zone(
        zone,
        [
            HostedRecord(zone, "MX", f"10 mail.{zone}"),
            HostedRecord(f"mail.{zone}", "A", IP),
            HostedRecord(f"s._domainkey.{zone}", "TXT", long_txt),
            HostedRecord(f"old.{zone}", "TXT", 'quoted "text" \\ here'),
        ],
    )
    resolver = build_resolver(Settings(dns_resolvers=pdns.dns_address, dns_timeout_seconds=2))
    assert resolver.mx(zone) == [(10, f"mail.{zone}")]
    assert resolver.txt(f"s._domainkey.{zone}") == [long_txt]
    assert resolver.txt(f"old.{zone}") == ['quoted "text" \\ here']

    hosting.publish_zone(zone, [HostedRecord(zone, "MX", f"20 mx.{zone}")])
    assert resolver.mx(zone) == [(20, f"mx.{zone}")]
    assert resolver.txt(f"old.{zone}") == []
    hosting.publish_zone(zone, [HostedRecord(zone, "MX", f"20 mx.{zone}")])  # idempotent

    hosting.delete_zone(zone)
    hosting.delete_zone(zone)
    with pytest.raises(DnsServerFailure):
        resolver.mx(zone)


def test_a_bought_domain_is_published_verified_and_removed(
    runtime: Runtime, tenant: Tenant, pdns: PowerDnsServer
) -> None:
    add_ips(runtime, tenant.workspace_id, IP)
    name = zone_name()
    seeded = add_domain(runtime, tenant.workspace_id, name, (IP,), managed=True)
    worker = DnsWorker(runtime)

    first = worker.run_once()
    assert first.published == [seeded.id]
    assert first.verified == [seeded.id]
    with runtime.db.transaction() as session:
        domain = session.get(Domain, seeded.id)
        assert domain is not None
        assert domain.status == "verified", domain.dns_results
        assert (domain.dns_results or {})["published"]["digest"]
    resolver = build_resolver(runtime.settings)
    assert resolver.txt(f"{SELECTOR}._domainkey.{name}") == [seeded.dkim_record]

    assert worker.run_once().published == []  # nothing changed, nothing republished

    add_ips(runtime, tenant.workspace_id, "203.0.113.8")
    worker._last_compare = 0.0  # compare digests now rather than after ADBTD_DNS_RETRY_SECONDS
    assert worker.run_once().published == [seeded.id]
    assert resolver.txt(name) == ["v=spf1 ip4:203.0.113.7 ip4:203.0.113.8 ~all"]
    assert sorted(resolver.addresses(f"mail.{name}")) == ["203.0.113.7", "203.0.113.8"]

    dns_publish.unpublish_domain(worker.hosting, name=name)
    with pytest.raises(DnsServerFailure):
        resolver.mx(name)


def test_zones_of_deleted_domains_are_removed_and_foreign_zones_kept(
    runtime: Runtime, tenant: Tenant, pdns: PowerDnsServer
) -> None:
    add_ips(runtime, tenant.workspace_id, IP)
    seeded = add_domain(runtime, tenant.workspace_id, zone_name(), (IP,), managed=True)
    worker = DnsWorker(runtime)
    assert worker.run_once().published == [seeded.id]
    foreign = zone_name()
    status, _ = PowerDnsHosting(pdns.api_url, pdns.api_key)._call(
        "POST", "/zones", {"name": foreign + ".", "kind": "Native", "nameservers": []}
    )
    assert status == 201
    assert seeded.name in worker.hosting.list_zones()
    assert foreign not in worker.hosting.list_zones()

    with runtime.db.transaction() as session:
        session.execute(delete(Domain).where(Domain.id == seeded.id))
    worker._last_compare = 0.0
    assert worker.run_once().removed == [seeded.name]
    assert seeded.name not in worker.hosting.list_zones()
    hosting = PowerDnsHosting(pdns.api_url, pdns.api_key)
    assert hosting.zone_rrsets(seeded.name) is None
    assert hosting.zone_rrsets(foreign) is not None
    # A zone adbtd did not make is never changed nor deleted, even when asked by name.
    with pytest.raises(DnsHostingError, match="that adbtd did not make"):
        hosting.publish_zone(foreign, [HostedRecord(foreign, "MX", f"10 mail.{foreign}")])
    hosting.delete_zone(foreign)
    assert [r["type"] for r in hosting.zone_rrsets(foreign) or []] == ["SOA"]  # still there
    status, _ = hosting._call("DELETE", hosting._zone_path(foreign))
    assert status == 204


def test_byo_domains_are_never_published(
    runtime: Runtime, tenant: Tenant, pdns: PowerDnsServer
) -> None:
    add_ips(runtime, tenant.workspace_id, IP)
    seeded = add_domain(runtime, tenant.workspace_id, zone_name(), (IP,))
    worker = DnsWorker(runtime)
    done = worker.run_once()
    assert done.published == []
    assert done.verified == [seeded.id]
    hosting = PowerDnsHosting(pdns.api_url, pdns.api_key)
    assert hosting.zone_rrsets(seeded.name) is None


def test_serve_components_publish_and_verify_a_bought_domain_on_their_own(
    settings_factory: Callable[..., Settings], tenant: Tenant, tmp_path: Path
) -> None:
    dns_port, api_port = free_port(), free_port()
    settings = settings_factory(
        data_dir=tmp_path / "own",
        pdns_local=True,
        pdns_dns_port=dns_port,
        pdns_api_url=f"http://127.0.0.1:{api_port}",
        dns_resolvers=f"127.0.0.1:{dns_port}",
        dns_poll_seconds=0.2,
        dnsbl_zones="",
        run_mailnode=False,
        run_worker=False,
    )
    runtime = Runtime.from_settings(settings)
    try:
        add_ips(runtime, tenant.workspace_id, IP)
        seeded = add_domain(runtime, tenant.workspace_id, zone_name(), (IP,), managed=True)
        components = background_components(runtime)
        assert [type(c).__name__ for c in components] == ["LocalPowerDns", "DnsWorker"]
        started = start_components(components)
        try:
            deadline = time.monotonic() + 20
            status = ""
            while time.monotonic() < deadline and status != "verified":
                time.sleep(0.2)
                with runtime.db.transaction() as session:
                    domain = session.get(Domain, seeded.id)
                    status = domain.status if domain else ""
            assert status == "verified"
        finally:
            stop_components(started)
        assert (tmp_path / "own" / "pdns" / "pdns.sqlite3").exists()
    finally:
        runtime.close()
