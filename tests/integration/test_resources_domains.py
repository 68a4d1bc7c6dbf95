"""Domains: GET/POST /domains, GET/DELETE /domains/:id, against the reference and DESIGN §1."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adbtd.adapters.registrar import LocalRegistrar
from adbtd.api.app import create_app
from adbtd.db.models import Domain, Mailbox, Order
from adbtd.mailnode.keys import dkim_public_record
from adbtd.runtime import Runtime
from adbtd.services import api_keys, billing, workspaces
from adbtd.services.node_state import DKIM_KEY_PURPOSE, load_node_state
from adbtd.services.secretbox import SecretBox
from adbtd.settings import Settings
from adbtd.workers.orders import OrderWorker
from tests.conftest import Tenant
from tests.integration.test_api_foundation import assert_envelope
from tests.support.resources import (
    DOMAIN_KEYS,
    ISO_MS,
    add_inventory,
    first_order,
    node_revision,
    provision,
    quantities,
    snapshot,
    unique_domain,
)


@pytest.fixture
def ready(runtime: Runtime, tenant: Tenant) -> Tenant:
    """A tenant whose first order (one domain, one IP, alice@) is provisioned."""
    add_inventory(runtime)
    first_order(runtime, tenant)
    return tenant


def test_list_domains_shape(client: TestClient, runtime: Runtime, ready: Tenant) -> None:
    body = client.get("/api/v1/domains", headers=ready.headers).json()
    assert set(body) == {"data"} and len(body["data"]) == 1
    domain = body["data"][0]
    assert set(domain) == DOMAIN_KEYS
    assert domain["id"].startswith("dom_") and domain["mode"] == "byo"
    assert domain["status"] == "unverified"
    assert all(domain[k] is False for k in ("spfOk", "dkimOk", "dmarcOk", "mxOk"))
    assert domain["dkimSelector"] == runtime.settings.dkim_selector
    assert re.match(ISO_MS, domain["createdAt"]) and domain["lastVerifiedAt"] is None


def test_add_domain_then_provisioned_with_dkim_key(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    name = unique_domain("shop")
    response = client.post("/api/v1/domains", headers=ready.headers, json={"name": name.upper()})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"orderId", "status", "domain"}
    assert data["status"] == "pending_provision" and data["domain"] == name
    pending = client.get(f"/api/v1/orders/{data['orderId']}", headers=ready.headers).json()
    assert pending["data"]["status"] == "pending_provision"
    assert provision(runtime) == 1
    order = client.get(f"/api/v1/orders/{data['orderId']}", headers=ready.headers).json()["data"]
    assert order["status"] == "completed" and order["kind"] == "domain"
    with runtime.db.transaction() as session:
        domain = session.scalar(select(Domain).where(Domain.name == name))
        assert domain is not None and domain.status == "unverified" and not domain.managed
        assert domain.dkim_private_key_encrypted is not None
        pem = SecretBox(runtime.settings.secret_key, DKIM_KEY_PURPOSE).open(
            domain.dkim_private_key_encrypted
        )
        assert "BEGIN PRIVATE KEY" not in domain.dkim_private_key_encrypted
        state = load_node_state(session, secret_key=runtime.settings.secret_key)
    assert name in {d.name for d in state.domains}
    detail = client.get(f"/api/v1/domains/{domain.id}", headers=ready.headers).json()["data"]
    assert set(detail) == DOMAIN_KEYS | {"dnsRecords"}
    records = {(r["type"], r["name"]): r for r in detail["dnsRecords"]}
    assert all(
        set(r) == {"type", "name", "value", "ok", "status", "error"} for r in detail["dnsRecords"]
    )
    assert all(r["status"] == "unchecked" and r["error"] for r in detail["dnsRecords"])
    dkim = records[("TXT", f"{runtime.settings.dkim_selector}._domainkey.{name}")]
    assert dkim["value"] == dkim_public_record(pem) and dkim["ok"] is False
    assert records[("TXT", f"_dmarc.{name}")]["value"].startswith("v=DMARC1")
    spf = records[("TXT", name)]["value"]
    assert spf.startswith("v=spf1") and "ip4:127.0.1." in spf
    assert records[("MX", name)]["value"].startswith("10 ")
    assert quantities(runtime, ready.workspace_id)["domain"] == 2


def test_dns_record_ok_follows_stored_flags(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    with runtime.db.transaction() as session:
        domain = session.scalars(select(Domain)).one()
        domain.spf_ok = True
        domain.dkim_ok = True
        domain_id = domain.id
    detail = client.get(f"/api/v1/domains/{domain_id}", headers=ready.headers).json()["data"]
    oks = {r["name"].split(".")[0]: r["ok"] for r in detail["dnsRecords"] if r["type"] == "TXT"}
    assert detail["spfOk"] is True and detail["mxOk"] is False
    assert oks[runtime.settings.dkim_selector] is True and oks["_dmarc"] is False


def test_buy_mode_goes_through_registrar_and_is_managed(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    name = unique_domain("bought")
    response = client.post(
        "/api/v1/domains", headers=ready.headers, json={"name": name, "mode": "buy"}
    )
    assert response.status_code == 200, response.text
    provision(runtime)
    with runtime.db.transaction() as session:
        domain = session.scalar(select(Domain).where(Domain.name == name))
        assert domain is not None and domain.managed and domain.mode == "buy"


def test_registrar_refusal_fails_the_order_and_releases_the_name(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    name = unique_domain("taken")
    order_id = client.post(
        "/api/v1/domains", headers=ready.headers, json={"name": name, "mode": "buy"}
    ).json()["data"]["orderId"]
    worker = OrderWorker(runtime, registrar=LocalRegistrar(refuse=frozenset({name})))
    assert worker.drain() == 1
    order = client.get(f"/api/v1/orders/{order_id}", headers=ready.headers).json()["data"]
    assert order["status"] == "failed" and "not available" in order["error"]
    assert order["completedAt"] is not None
    names = [d["name"] for d in client.get("/api/v1/domains", headers=ready.headers).json()["data"]]
    assert name not in names
    again = client.post("/api/v1/domains", headers=ready.headers, json={"name": name})
    assert again.status_code == 200


def test_domain_needs_a_dedicated_ip(client: TestClient, runtime: Runtime, tenant: Tenant) -> None:
    before = snapshot(runtime)
    response = client.post("/api/v1/domains", headers=tenant.headers, json={"name": "a.test"})
    assert_envelope(response, 409, "conflict")
    assert snapshot(runtime) == before


def test_payment_method_checked_before_state(
    client: TestClient, runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    broke = make_tenant(payment_method=False)
    response = client.post("/api/v1/domains", headers=broke.headers, json={"name": "a.test"})
    error = assert_envelope(response, 402, "payment_required")
    assert str(error["checkoutUrl"]).startswith(runtime.settings.base_url)
    assert broke.workspace_id in str(error["checkoutUrl"])
    bad = client.post("/api/v1/domains", headers=broke.headers, json={"name": "not a domain"})
    assert_envelope(bad, 400, "validation_error")


def test_name_exists_on_any_workspace_is_409(
    client: TestClient, runtime: Runtime, ready: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant()
    first_order(runtime, other)
    taken = client.get("/api/v1/domains", headers=other.headers).json()["data"][0]["name"]
    before = snapshot(runtime)
    for name in (taken, taken.upper(), taken + "."):
        response = client.post("/api/v1/domains", headers=ready.headers, json={"name": name})
        assert_envelope(response, 409, "conflict")
    assert snapshot(runtime) == before


BAD_NAMES: list[Any] = [
    "",
    "localhost",
    "acme",
    "-acme.com",
    "acme-.com",
    "ac_me.com",
    "acme..com",
    ".acme.com",
    "acme.com..",
    "acme.123",
    "a" * 64 + ".com",
    ("a" * 63 + ".") * 4 + "com",
    "bücher.de",
    "acme.com/x",
    "acme .com",
    "acme.com\n",
    "printer.local",
    "x.localhost",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_domain_names_are_400(
    client: TestClient, runtime: Runtime, ready: Tenant, name: str
) -> None:
    before = snapshot(runtime)
    response = client.post("/api/v1/domains", headers=ready.headers, json={"name": name})
    assert_envelope(response, 400, "validation_error")
    assert snapshot(runtime) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": 123},
        {"name": None},
        {"name": ["a.test"]},
        {"name": "a.test", "mode": "rent"},
        {"name": "a.test", "mode": "BYO"},
        {"name": "a.test", "extra": 1},
        {"name": "a.test", "mode": "byo", "ips": 1},
        [],
        "a.test",
    ],
)
def test_bad_bodies_are_400(client: TestClient, runtime: Runtime, ready: Tenant, body: Any) -> None:
    before = snapshot(runtime)
    response = client.post("/api/v1/domains", headers=ready.headers, json=body)
    assert_envelope(response, 400, "validation_error")
    assert snapshot(runtime) == before


def test_malformed_json_is_400(client: TestClient, ready: Tenant) -> None:
    response = client.post(
        "/api/v1/domains",
        headers={**ready.headers, "Content-Type": "application/json"},
        content=b'{"name": ',
    )
    assert_envelope(response, 400, "validation_error")


def test_delete_domain_deletes_its_mailboxes(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime)
    name = unique_domain()
    first_order(runtime, tenant, domain=name, emails=[f"a@{name}", f"b@{name}"])
    other = unique_domain("other")
    client.post("/api/v1/domains", headers=tenant.headers, json={"name": other})
    client.post("/api/v1/mailboxes", headers=tenant.headers, json={"emails": [f"c@{other}"]})
    provision(runtime)
    assert quantities(runtime, tenant.workspace_id) == {"domain": 2, "ip": 1, "mailbox": 3}
    domain_id = next(
        d["id"]
        for d in client.get("/api/v1/domains", headers=tenant.headers).json()["data"]
        if d["name"] == name
    )
    revision = node_revision(runtime)
    response = client.delete(f"/api/v1/domains/{domain_id}", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == {"data": {"deletedMailboxes": 2}}
    assert node_revision(runtime) > revision
    assert quantities(runtime, tenant.workspace_id) == {"domain": 1, "ip": 1, "mailbox": 1}
    with runtime.db.transaction() as session:
        left = session.scalars(select(Mailbox.email)).all()
        state = load_node_state(session, secret_key=runtime.settings.secret_key)
    assert left == [f"c@{other}"]
    assert {m.email for m in state.mailboxes} == {f"c@{other}"}
    again = client.delete(f"/api/v1/domains/{domain_id}", headers=tenant.headers)
    assert_envelope(again, 404, "not_found")


def test_other_workspace_domain_is_404_and_untouched(
    client: TestClient, runtime: Runtime, ready: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    intruder = make_tenant()
    domain_id = client.get("/api/v1/domains", headers=ready.headers).json()["data"][0]["id"]
    before = snapshot(runtime)
    assert_envelope(
        client.get(f"/api/v1/domains/{domain_id}", headers=intruder.headers), 404, "not_found"
    )
    assert_envelope(
        client.delete(f"/api/v1/domains/{domain_id}", headers=intruder.headers), 404, "not_found"
    )
    assert snapshot(runtime) == before
    assert client.get("/api/v1/domains", headers=intruder.headers).json() == {"data": []}


@pytest.mark.parametrize(
    "bad_id",
    ["nope", "dom_short", "mb_" + "a" * 20, "dom_" + "a" * 19 + "!", "dom_" + "a" * 21, "%00"],
)
def test_wrong_id_shapes_are_400(
    client: TestClient, runtime: Runtime, ready: Tenant, bad_id: str
) -> None:
    before = snapshot(runtime)
    assert_envelope(
        client.get(f"/api/v1/domains/{bad_id}", headers=ready.headers), 400, "validation_error"
    )
    assert_envelope(
        client.delete(f"/api/v1/domains/{bad_id}", headers=ready.headers), 400, "validation_error"
    )
    assert snapshot(runtime) == before


def test_unauthenticated_domain_routes_are_401(client: TestClient) -> None:
    assert_envelope(client.get("/api/v1/domains"), 401, "unauthorized")
    assert_envelope(client.post("/api/v1/domains", json={"name": "a.test"}), 401, "unauthorized")
    assert_envelope(client.delete("/api/v1/domains/dom_" + "a" * 20), 401, "unauthorized")


def test_concurrent_adds_of_one_name_give_one_domain(
    settings_factory: Callable[..., Settings],
) -> None:
    runtime = Runtime.from_settings(
        settings_factory(rate_default_burst=10_000, rate_default_per_minute=60_000)
    )
    try:
        add_inventory(runtime)
        tenants = []
        for i in range(6):
            with runtime.db.transaction() as session:
                ws = workspaces.create_workspace(session, slug=f"r{i}", name="R")
                billing.record_payment_method(session, workspace_id=ws.id)
                key = api_keys.create_key(session, workspace_id=ws.id, name="k")
            tenants.append(Tenant(ws.id, ws.slug, key.key.id, key.token))
            first_order(runtime, tenants[-1], emails=[], run=False)
        provision(runtime)
        name = unique_domain("contested")
        barrier = threading.Barrier(len(tenants))
        with TestClient(create_app(runtime), raise_server_exceptions=False) as client:

            def add(tenant: Tenant) -> int:
                barrier.wait()
                response = client.post(
                    "/api/v1/domains", headers=tenant.headers, json={"name": name}
                )
                return response.status_code

            with ThreadPoolExecutor(len(tenants)) as pool:
                statuses = sorted(pool.map(add, tenants))
        assert statuses == [200] + [409] * (len(tenants) - 1)
        with runtime.db.transaction() as session:
            assert len(session.scalars(select(Domain).where(Domain.name == name)).all()) == 1
            assert len(session.scalars(select(Order).where(Order.kind == "domain")).all()) == 1
    finally:
        runtime.close()
