"""POST /domains/:id/verify through the API, against a real local DNS server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from adbtd.runtime import Runtime
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.support.dns_seed import SELECTOR, add_domain, add_ips, publish_correct_records
from tests.support.dns_server import DnsTestServer, running_dns_server

IP = "203.0.113.7"


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with running_dns_server() as server:
        yield server


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], dns: DnsTestServer) -> Settings:
    return settings_factory(dns_resolvers=dns.address, dns_timeout_seconds=0.5, dns_attempts=1)


def test_verify_now_returns_the_domain_with_checked_records(
    runtime: Runtime, client: TestClient, tenant: Tenant, dns: DnsTestServer
) -> None:
    add_ips(runtime, tenant.workspace_id, IP)
    seeded = add_domain(runtime, tenant.workspace_id, "acme.test", (IP,))
    publish_correct_records(dns, seeded)
    dns.replace("_dmarc.acme.test", "TXT", "v=DMARC1; rua=mailto:d@acme.test")

    response = client.post(f"/api/v1/domains/{seeded.id}/verify", headers=tenant.headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["id"] == seeded.id
    assert data["status"] == "unverified"
    assert (data["mxOk"], data["spfOk"], data["dkimOk"], data["dmarcOk"]) == (
        True,
        True,
        True,
        False,
    )
    assert data["lastVerifiedAt"].endswith("Z")
    rows = {(r["type"], r["name"]): r for r in data["dnsRecords"]}
    assert rows[("MX", "acme.test")] == {
        "type": "MX",
        "name": "acme.test",
        "value": "10 mail.acme.test",
        "ok": True,
        "status": "ok",
        "error": None,
    }
    assert rows[("TXT", f"{SELECTOR}._domainkey.acme.test")]["value"] == seeded.dkim_record
    dmarc = rows[("TXT", "_dmarc.acme.test")]
    assert dmarc["ok"] is False
    assert dmarc["status"] == "fail"
    assert "no p= tag" in dmarc["error"]

    dns.replace("_dmarc.acme.test", "TXT", "v=DMARC1; p=none")
    again = client.post(f"/api/v1/domains/{seeded.id}/verify", headers=tenant.headers)
    assert again.json()["data"]["status"] == "verified"
    shown = client.get(f"/api/v1/domains/{seeded.id}", headers=tenant.headers).json()["data"]
    assert shown["status"] == "verified"
    assert all(record["ok"] for record in shown["dnsRecords"])


def test_verify_is_scoped_to_the_workspace_and_to_provisioned_domains(
    runtime: Runtime, client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    owner, other = make_tenant(), make_tenant()
    seeded = add_domain(runtime, owner.workspace_id, "owned.test", ())
    pending = add_domain(
        runtime, owner.workspace_id, "pending.test", (), status="pending_provision"
    )
    foreign = client.post(f"/api/v1/domains/{seeded.id}/verify", headers=other.headers)
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "not_found"
    unknown = client.post("/api/v1/domains/dom_" + "n" * 20 + "/verify", headers=owner.headers)
    assert unknown.status_code == 404
    malformed = client.post("/api/v1/domains/dom_nope/verify", headers=owner.headers)
    assert malformed.status_code == 400
    early = client.post(f"/api/v1/domains/{pending.id}/verify", headers=owner.headers)
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "conflict"
    unauthenticated = client.post(f"/api/v1/domains/{seeded.id}/verify")
    assert unauthenticated.status_code == 401
