"""Dedicated IPs: GET/POST /ips, DELETE /ips/:id, inventory exhaustion and cooldown."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adbtd.api.app import create_app
from adbtd.clock import utcnow
from adbtd.db.models import DedicatedIp, Mailbox
from adbtd.runtime import Runtime
from adbtd.services import api_keys, billing, inventory, workspaces
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.integration.test_api_foundation import assert_envelope
from tests.support.resources import (
    IP_KEYS,
    ISO_MS,
    add_inventory,
    first_order,
    node_revision,
    provision,
    quantities,
    snapshot,
)


@pytest.fixture
def ready(runtime: Runtime, tenant: Tenant) -> Tenant:
    add_inventory(runtime)
    first_order(runtime, tenant)
    return tenant


def ip_rows(runtime: Runtime) -> dict[str, DedicatedIp]:
    with runtime.db.transaction() as session:
        return {ip.address: ip for ip in session.scalars(select(DedicatedIp))}


def test_list_ips_shape(client: TestClient, ready: Tenant) -> None:
    body = client.get("/api/v1/ips", headers=ready.headers).json()
    assert set(body) == {"data"} and len(body["data"]) == 1
    ip = body["data"][0]
    assert set(ip) == IP_KEYS
    assert ip["id"].startswith("ip_") and ip["status"] == "assigned"
    assert re.match(r"^127\.0\.1\.\d+$", ip["address"])
    assert re.match(ISO_MS, ip["allocatedAt"])
    assert ip["lastReputationAt"] is None and ip["reputationFlags"] is None


def test_order_more_ips(client: TestClient, runtime: Runtime, ready: Tenant) -> None:
    response = client.post("/api/v1/ips", headers=ready.headers, json={"count": 2})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"orderId", "status", "ips"}
    assert data["status"] == "pending_provision" and data["ips"] == 2
    listed = client.get("/api/v1/ips", headers=ready.headers).json()["data"]
    assert sorted(ip["status"] for ip in listed) == ["assigned", "reserved", "reserved"]
    assert provision(runtime) == 1
    listed = client.get("/api/v1/ips", headers=ready.headers).json()["data"]
    assert [ip["status"] for ip in listed] == ["assigned"] * 3
    assert len({ip["address"] for ip in listed}) == 3
    assert quantities(runtime, ready.workspace_id)["ip"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"count": 0},
        {"count": 11},
        {"count": -1},
        {"count": "1"},
        {"count": 1.5},
        {"count": 1.0},
        {"count": True},
        {"count": None},
        {"count": 10**30},
        {"count": 1, "region": "eu"},
        [1],
    ],
)
def test_bad_counts_are_400(client: TestClient, runtime: Runtime, ready: Tenant, body: Any) -> None:
    before = snapshot(runtime)
    assert_envelope(
        client.post("/api/v1/ips", headers=ready.headers, json=body), 400, "validation_error"
    )
    assert snapshot(runtime) == before


def test_ips_need_a_domain(client: TestClient, runtime: Runtime, tenant: Tenant) -> None:
    add_inventory(runtime)
    before = snapshot(runtime)
    response = client.post("/api/v1/ips", headers=tenant.headers, json={"count": 1})
    assert_envelope(response, 409, "conflict")
    assert snapshot(runtime) == before


def test_check_order_400_then_402_then_409_then_503(
    client: TestClient, runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    broke = make_tenant(payment_method=False)
    assert_envelope(
        client.post("/api/v1/ips", headers=broke.headers, json={"count": 0}),
        400,
        "validation_error",
    )
    assert_envelope(
        client.post("/api/v1/ips", headers=broke.headers, json={"count": 1}),
        402,
        "payment_required",
    )
    payer = make_tenant()
    assert_envelope(
        client.post("/api/v1/ips", headers=payer.headers, json={"count": 10}), 409, "conflict"
    )
    add_inventory(runtime, "127.0.3.1-127.0.3.3")
    first_order(runtime, payer, ips=2)
    assert_envelope(
        client.post("/api/v1/ips", headers=payer.headers, json={"count": 2}),
        503,
        "inventory_unavailable",
    )


def test_a_failed_payment_blocks_orders_until_a_new_checkout(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime)
    first_order(runtime, tenant)
    with runtime.db.transaction() as session:
        billing.account_for(session, tenant.workspace_id).delinquent = True
    before = snapshot(runtime)
    response = client.post("/api/v1/ips", headers=tenant.headers, json={"count": 1})
    error = assert_envelope(response, 402, "payment_required")
    assert "payment failed" in error["message"]
    assert error["checkoutUrl"].endswith(f"?workspace={tenant.workspace_id}")
    assert snapshot(runtime) == before
    with runtime.db.transaction() as session:
        billing.account_for(session, tenant.workspace_id).delinquent = False
    response = client.post("/api/v1/ips", headers=tenant.headers, json={"count": 1})
    assert response.status_code == 200, response.text


def test_exhausted_inventory_reserves_nothing(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime, "127.0.3.1-127.0.3.4")
    first_order(runtime, tenant)
    before = snapshot(runtime)
    response = client.post("/api/v1/ips", headers=tenant.headers, json={"count": 4})
    assert_envelope(response, 503, "inventory_unavailable")
    assert snapshot(runtime) == before
    assert client.post("/api/v1/ips", headers=tenant.headers, json={"count": 3}).status_code == 200


def test_release_moves_mailboxes_and_cools_down(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime)
    placed = first_order(runtime, tenant, ips=2, emails=None)
    name = placed.domain
    client.post(
        "/api/v1/mailboxes",
        headers=tenant.headers,
        json={"emails": [f"m{i}@{name}" for i in range(5)]},
    )
    provision(runtime)
    ips = client.get("/api/v1/ips", headers=tenant.headers).json()["data"]
    victim, keeper = ips[0], ips[1]
    revision = node_revision(runtime)
    response = client.delete(f"/api/v1/ips/{victim['id']}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {"released": victim["address"], "cancelledSubscription": False}
    }
    assert node_revision(runtime) > revision
    boxes = client.get("/api/v1/mailboxes", headers=tenant.headers).json()["data"]
    assert len(boxes) == 6
    assert {b["smtpHost"] for b in boxes} == {b["imapHost"] for b in boxes} == {keeper["address"]}
    released = ip_rows(runtime)[victim["address"]]
    assert released.status == "cooldown" and released.workspace_id is None
    assert released.cooldown_until is not None
    expected = utcnow() + timedelta(days=runtime.settings.ip_cooldown_days)
    assert abs((released.cooldown_until - expected).total_seconds()) < 60
    assert [
        ip["id"] for ip in client.get("/api/v1/ips", headers=tenant.headers).json()["data"]
    ] == [keeper["id"]]
    assert quantities(runtime, tenant.workspace_id)["ip"] == 1
    last = client.delete(f"/api/v1/ips/{keeper['id']}", headers=tenant.headers)
    assert_envelope(last, 409, "conflict")
    assert ip_rows(runtime)[keeper["address"]].status == "assigned"


def test_release_last_ip_without_mailboxes_cancels_subscription(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime)
    first_order(runtime, tenant, emails=[])
    ip = client.get("/api/v1/ips", headers=tenant.headers).json()["data"][0]
    response = client.delete(f"/api/v1/ips/{ip['id']}", headers=tenant.headers)
    assert response.json() == {"data": {"released": ip["address"], "cancelledSubscription": True}}
    assert quantities(runtime, tenant.workspace_id)["ip"] == 0
    assert_envelope(
        client.delete(f"/api/v1/ips/{ip['id']}", headers=tenant.headers), 404, "not_found"
    )


def test_cooling_ip_is_not_reused_until_cooldown_ends(
    client: TestClient, runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    add_inventory(runtime, "127.0.4.1")
    first = make_tenant()
    first_order(runtime, first, emails=[])
    ip = client.get("/api/v1/ips", headers=first.headers).json()["data"][0]
    client.delete(f"/api/v1/ips/{ip['id']}", headers=first.headers)
    second = make_tenant()
    with runtime.db.transaction() as session:
        assert inventory.available_count(session) == 0
    with pytest.raises(Exception, match="not enough free dedicated IPs"):
        first_order(runtime, second)
    with runtime.db.transaction() as session:
        row = session.scalars(select(DedicatedIp)).one()
        row.cooldown_until = utcnow() - timedelta(seconds=1)
    first_order(runtime, second, emails=[])
    reused = client.get("/api/v1/ips", headers=second.headers).json()["data"][0]
    assert reused["address"] == ip["address"] and reused["id"] == ip["id"]
    assert reused["status"] == "assigned"


def test_reserved_ip_cannot_be_released(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    client.post("/api/v1/ips", headers=ready.headers, json={"count": 1})
    reserved = next(
        ip
        for ip in client.get("/api/v1/ips", headers=ready.headers).json()["data"]
        if ip["status"] == "reserved"
    )
    before = snapshot(runtime)
    assert_envelope(
        client.delete(f"/api/v1/ips/{reserved['id']}", headers=ready.headers), 409, "conflict"
    )
    assert snapshot(runtime) == before


def test_other_workspace_ip_is_404_and_untouched(
    client: TestClient, runtime: Runtime, ready: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    intruder = make_tenant()
    ip_id = client.get("/api/v1/ips", headers=ready.headers).json()["data"][0]["id"]
    before = snapshot(runtime)
    assert_envelope(
        client.delete(f"/api/v1/ips/{ip_id}", headers=intruder.headers), 404, "not_found"
    )
    assert snapshot(runtime) == before
    assert client.get("/api/v1/ips", headers=intruder.headers).json() == {"data": []}


def test_free_inventory_ip_id_is_404(client: TestClient, runtime: Runtime, ready: Tenant) -> None:
    with runtime.db.transaction() as session:
        free_id = session.scalars(
            select(DedicatedIp.id).where(DedicatedIp.status == "free")
        ).first()
    assert free_id is not None
    assert_envelope(
        client.delete(f"/api/v1/ips/{free_id}", headers=ready.headers), 404, "not_found"
    )


@pytest.mark.parametrize("bad_id", ["x", "ip_", "dom_" + "a" * 20, "ip_" + "a" * 25])
def test_wrong_ip_id_shapes_are_400(
    client: TestClient, runtime: Runtime, ready: Tenant, bad_id: str
) -> None:
    before = snapshot(runtime)
    assert_envelope(
        client.delete(f"/api/v1/ips/{bad_id}", headers=ready.headers), 400, "validation_error"
    )
    assert snapshot(runtime) == before


@pytest.fixture
def busy_runtime(settings_factory: Callable[..., Settings]) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(
        settings_factory(rate_default_burst=10_000, rate_default_per_minute=60_000)
    )
    yield runtime
    runtime.close()


def test_concurrent_ip_orders_never_share_an_address(busy_runtime: Runtime) -> None:
    """Many workspaces order IPs at once through the API; every address goes to one order."""
    runtime = busy_runtime
    add_inventory(runtime, "127.0.5.1-127.0.5.30")
    tenants: list[Tenant] = []
    for i in range(8):
        with runtime.db.transaction() as session:
            ws = workspaces.create_workspace(session, slug=f"c{i}", name=f"C{i}")
            billing.record_payment_method(session, workspace_id=ws.id)
            key = api_keys.create_key(session, workspace_id=ws.id, name="k")
            tenants.append(Tenant(ws.id, ws.slug, key.key.id, key.token))
        first_order(runtime, tenants[-1], emails=[], run=False)
    provision(runtime)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:

        def order(tenant: Tenant) -> tuple[int, str | None]:
            response = client.post("/api/v1/ips", headers=tenant.headers, json={"count": 4})
            body = response.json()
            return response.status_code, body.get("data", {}).get("orderId")

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(order, tenants * 2))
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    placed = [order_id for status, order_id in results if status == 200]
    assert 1 <= len(placed) <= 5  # 22 free addresses, 4 each
    with runtime.db.transaction() as session:
        rows = session.scalars(select(DedicatedIp).where(DedicatedIp.status == "reserved")).all()
    by_order: dict[str | None, int] = {}
    for row in rows:
        by_order[row.order_id] = by_order.get(row.order_id, 0) + 1
    assert by_order == {order_id: 4 for order_id in placed}
    assert provision(runtime) == len(placed)
    with runtime.db.transaction() as session:
        held = session.scalars(
            select(DedicatedIp).where(DedicatedIp.workspace_id.is_not(None))
        ).all()
        assert len({ip.address for ip in held}) == len(held) == 8 + 4 * len(placed)
        assert all(ip.status == "assigned" for ip in held)
        assert session.scalars(select(Mailbox)).all() == []


def test_concurrent_releases_never_strand_mailboxes(busy_runtime: Runtime) -> None:
    runtime = busy_runtime
    add_inventory(runtime)
    with runtime.db.transaction() as session:
        ws = workspaces.create_workspace(session, slug="race", name="Race")
        billing.record_payment_method(session, workspace_id=ws.id)
        key = api_keys.create_key(session, workspace_id=ws.id, name="k")
    tenant = Tenant(ws.id, ws.slug, key.key.id, key.token)
    placed = first_order(runtime, tenant, ips=2, emails=None)
    assert placed.domain is not None
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        ids = [ip["id"] for ip in client.get("/api/v1/ips", headers=tenant.headers).json()["data"]]
        barrier = threading.Barrier(2)

        def release(ip_id: str) -> int:
            barrier.wait()
            return client.delete(f"/api/v1/ips/{ip_id}", headers=tenant.headers).status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(release, ids))
        assert statuses == [200, 409]
        boxes = client.get("/api/v1/mailboxes", headers=tenant.headers).json()["data"]
        left = client.get("/api/v1/ips", headers=tenant.headers).json()["data"]
    assert len(left) == 1 and left[0]["status"] == "assigned"
    assert [b["smtpHost"] for b in boxes] == [left[0]["address"]]
