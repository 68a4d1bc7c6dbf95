"""Through the API: buy a domain, its zone appears in PowerDNS, it verifies, deleting removes it."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from adbtd.adapters.pdns import PowerDnsHosting
from adbtd.adapters.pdns_server import PowerDnsServer, pdns_installed
from adbtd.runtime import Runtime
from adbtd.settings import Settings
from adbtd.workers.dns import DnsWorker
from tests.conftest import Tenant
from tests.support.postgres import free_port
from tests.support.resources import add_inventory, first_order, provision, unique_domain

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not pdns_installed(), reason="pdns-server is not installed"),
]


@pytest.fixture(scope="module")
def pdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PowerDnsServer]:
    server = PowerDnsServer(
        tmp_path_factory.mktemp("pdns-flow"),
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


def test_bought_domain_verifies_end_to_end_and_leaves_with_its_zone(
    client: TestClient, runtime: Runtime, tenant: Tenant, pdns: PowerDnsServer
) -> None:
    add_inventory(runtime)
    first_order(runtime, tenant)
    name = unique_domain("bought")
    placed = client.post(
        "/api/v1/domains", headers=tenant.headers, json={"name": name, "mode": "buy"}
    )
    assert placed.status_code == 200, placed.text
    assert provision(runtime) == 1
    listed = client.get("/api/v1/domains", headers=tenant.headers).json()["data"]
    (bought,) = [d for d in listed if d["name"] == name]
    assert bought["mode"] == "buy" and bought["status"] == "unverified"

    worker = DnsWorker(runtime)
    done = worker.run_once()
    assert bought["id"] in done.published
    assert bought["id"] in done.verified

    shown = client.get(f"/api/v1/domains/{bought['id']}", headers=tenant.headers).json()["data"]
    assert shown["status"] == "verified"
    assert (shown["mxOk"], shown["spfOk"], shown["dkimOk"], shown["dmarcOk"]) == (True,) * 4
    assert shown["lastVerifiedAt"] is not None
    assert shown["dnsRecords"] and all(record["ok"] for record in shown["dnsRecords"])

    hosting = PowerDnsHosting(pdns.api_url, pdns.api_key)
    assert name in hosting.list_zones()
    deleted = client.delete(f"/api/v1/domains/{bought['id']}", headers=tenant.headers)
    assert deleted.status_code == 200, deleted.text
    worker._last_compare = 0.0  # the orphan sweep runs every ADBTD_DNS_RETRY_SECONDS
    assert name in worker.run_once().removed
    assert name not in hosting.list_zones()
