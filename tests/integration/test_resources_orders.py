"""Orders: the first order, GET /orders[/:id], and the worker's claims, leases and failures."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from adbtd.clock import utcnow
from adbtd.db.models import DedicatedIp, Domain, Mailbox, Order
from adbtd.errors import Conflict, InventoryUnavailable, PaymentRequired, ValidationFailed
from adbtd.runtime import Runtime
from adbtd.services import orders, provisioning
from adbtd.workers.orders import MAX_ATTEMPTS, OrderWorker, worker_host
from tests.conftest import Tenant
from tests.integration.test_api_foundation import assert_envelope
from tests.support.resources import (
    ISO_MS,
    add_inventory,
    first_order,
    provision,
    quantities,
    snapshot,
    unique_domain,
)

ORDER_KEYS = {
    "id",
    "kind",
    "status",
    "error",
    "createdAt",
    "completedAt",
    "domain",
    "mode",
    "ips",
    "emails",
}


def place(runtime: Runtime, tenant: Tenant, **kwargs: Any) -> orders.PlacedOrder:
    values: dict[str, Any] = {"domain": unique_domain(), "ip_count": 1, "emails": []}
    values.update(kwargs)
    with runtime.db.transaction() as session:
        return orders.place_first_order(
            session, workspace_id=tenant.workspace_id, settings=runtime.settings, **values
        )


def test_first_order_creates_everything_pending_in_one_order(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime)
    name = unique_domain()
    placed = place(runtime, tenant, domain=name, ip_count=2, emails=[f"a@{name}", f"b@{name}"])
    assert placed.status == "pending_provision"
    listed = client.get("/api/v1/orders", headers=tenant.headers).json()["data"]
    assert len(listed) == 1 and set(listed[0]) == ORDER_KEYS
    assert listed[0] == {
        "id": placed.order_id,
        "kind": "first_order",
        "status": "pending_provision",
        "error": None,
        "createdAt": listed[0]["createdAt"],
        "completedAt": None,
        "domain": name,
        "mode": "byo",
        "ips": 2,
        "emails": [f"a@{name}", f"b@{name}"],
    }
    assert re.match(ISO_MS, listed[0]["createdAt"])
    with runtime.db.transaction() as session:
        assert session.scalars(select(Domain.status)).all() == ["pending_provision"]
        assert sorted(session.scalars(select(Mailbox.status))) == ["pending_provision"] * 2
        reserved = session.scalars(
            select(DedicatedIp).where(DedicatedIp.order_id == placed.order_id)
        ).all()
        assert [ip.status for ip in reserved] == ["reserved", "reserved"]
    assert provision(runtime) == 1
    done = client.get(f"/api/v1/orders/{placed.order_id}", headers=tenant.headers).json()["data"]
    assert done["status"] == "completed" and re.match(ISO_MS, done["completedAt"])
    assert quantities(runtime, tenant.workspace_id) == {"domain": 1, "ip": 2, "mailbox": 2}


def test_first_order_rules(runtime: Runtime, make_tenant: Callable[..., Tenant]) -> None:
    add_inventory(runtime, "127.0.6.1-127.0.6.3")
    tenant = make_tenant()
    name = unique_domain()
    with pytest.raises(ValidationFailed):
        place(runtime, tenant, domain=name, emails=["x@elsewhere.test"])
    with pytest.raises(ValidationFailed):
        place(runtime, tenant, ip_count=0)
    with pytest.raises(ValidationFailed):
        place(runtime, tenant, ip_count=11)
    with pytest.raises(ValidationFailed):
        place(runtime, tenant, mode="lease")
    with pytest.raises(PaymentRequired):
        place(runtime, make_tenant(payment_method=False))
    with pytest.raises(InventoryUnavailable):
        place(runtime, tenant, ip_count=4)
    before = snapshot(runtime)
    place(runtime, tenant, domain=name, ip_count=1)
    assert snapshot(runtime) != before
    with pytest.raises(Conflict):
        place(runtime, tenant, ip_count=1)
    other = make_tenant()
    with pytest.raises(Conflict):
        place(runtime, other, domain=name)


def test_order_routes_isolation_and_shapes(
    client: TestClient, runtime: Runtime, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    add_inventory(runtime)
    placed = first_order(runtime, tenant)
    intruder = make_tenant()
    assert_envelope(
        client.get(f"/api/v1/orders/{placed.order_id}", headers=intruder.headers), 404, "not_found"
    )
    assert client.get("/api/v1/orders", headers=intruder.headers).json() == {"data": []}
    for bad in ("ord_x", "dom_" + "a" * 20, "ord_" + "a" * 30):
        assert_envelope(
            client.get(f"/api/v1/orders/{bad}", headers=tenant.headers), 400, "validation_error"
        )
    unknown = client.get("/api/v1/orders/ord_" + "a" * 20, headers=tenant.headers)
    assert_envelope(unknown, 404, "not_found")
    for bad_limit in ("0", "101", "x"):
        response = client.get(f"/api/v1/orders?limit={bad_limit}", headers=tenant.headers)
        assert_envelope(response, 400, "validation_error")
    client.post("/api/v1/ips", headers=tenant.headers, json={"count": 1})
    newest = client.get("/api/v1/orders?limit=1", headers=tenant.headers).json()["data"]
    assert [o["kind"] for o in newest] == ["ips"]


def test_two_workers_never_take_the_same_order(
    runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    add_inventory(runtime)
    for _ in range(6):
        place(runtime, make_tenant())
    claims: list[tuple[str, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def claimer(worker_id: str) -> None:
        barrier.wait()
        while True:
            with runtime.db.transaction() as session:
                order_id = provisioning.claim_next_order(
                    session, worker_id=worker_id, lease_seconds=60
                )
            if order_id is None:
                return
            with lock:
                claims.append((order_id, worker_id))

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(claims) == 6 and len({order_id for order_id, _ in claims}) == 6
    with runtime.db.transaction() as session:
        rows = session.scalars(select(Order)).all()
    assert all(row.attempts == 1 and row.claimed_by for row in rows)
    assert {row.id: row.claimed_by for row in rows} == dict(claims)


def test_parallel_workers_complete_each_order_once(
    runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    add_inventory(runtime)
    tenants = [make_tenant() for _ in range(5)]
    for tenant in tenants:
        name = unique_domain()
        place(runtime, tenant, domain=name, emails=[f"a@{name}"])
    workers = [OrderWorker(runtime, poll_seconds=0.05) for _ in range(3)]
    done = [0, 0, 0]

    def run(index: int) -> None:
        done[index] = workers[index].drain()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(done) == 5
    with runtime.db.transaction() as session:
        assert {o.status for o in session.scalars(select(Order))} == {"completed"}
        assert all(o.attempts == 1 for o in session.scalars(select(Order)))
        assert {m.status for m in session.scalars(select(Mailbox))} == {"active"}


def test_lost_lease_cannot_complete(runtime: Runtime, tenant: Tenant) -> None:
    add_inventory(runtime)
    placed = place(runtime, tenant)
    with runtime.db.transaction() as session:
        assert provisioning.claim_next_order(session, worker_id="slow", lease_seconds=0.01)
    with runtime.db.transaction() as session:
        plan = provisioning.plan_order(session, order_id=placed.order_id, worker_id="slow")
    assert plan is not None and len(plan.keyless_domains) == 1
    time.sleep(0.05)
    fast = OrderWorker(runtime)
    assert fast.drain() == 1
    with runtime.db.transaction() as session:
        late = provisioning.complete_order(
            session,
            order_id=placed.order_id,
            worker_id="slow",
            made=provisioning.Provisioned(),
            secret_key=runtime.settings.secret_key,
        )
        order = session.get(Order, placed.order_id)
        assert order is not None
    assert late is False
    assert order.status == "completed" and order.attempts == 2


def test_repeated_errors_fail_the_order_and_release_everything(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_inventory(runtime)
    name = unique_domain()
    placed = place(runtime, tenant, domain=name, ip_count=2, emails=[f"a@{name}"])
    free_before = _free_count(runtime)

    def broken(*_: Any, **__: Any) -> str:
        raise RuntimeError("key generator exploded")

    monkeypatch.setattr("adbtd.workers.orders.generate_dkim_key", broken)
    worker = OrderWorker(runtime)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with runtime.db.transaction() as session:
            session.execute(update(Order).values(claimed_until=None))
        assert worker.run_once()
        with runtime.db.transaction() as session:
            order = session.get(Order, placed.order_id)
            assert order is not None and order.attempts == attempt
    assert order.status == "failed"
    assert order.error is not None and "exploded" not in order.error
    with runtime.db.transaction() as session:
        assert session.scalars(select(Domain)).all() == []
        assert session.scalars(select(Mailbox)).all() == []
        assert (
            session.scalars(select(DedicatedIp).where(DedicatedIp.workspace_id.is_not(None))).all()
            == []
        )
    assert _free_count(runtime) == free_before + 2
    assert quantities(runtime, tenant.workspace_id) == {"domain": 0, "ip": 0, "mailbox": 0}
    again = place(runtime, tenant, domain=name, ip_count=2)
    assert again.status == "pending_provision"


def test_deleted_domain_before_provisioning_completes_cleanly(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime)
    name = unique_domain()
    first_order(runtime, tenant, domain=name)
    other = unique_domain()
    order_id = client.post("/api/v1/domains", headers=tenant.headers, json={"name": other}).json()[
        "data"
    ]["orderId"]
    client.post("/api/v1/mailboxes", headers=tenant.headers, json={"emails": [f"z@{other}"]})
    domain_id = next(
        d["id"]
        for d in client.get("/api/v1/domains", headers=tenant.headers).json()["data"]
        if d["name"] == other
    )
    assert client.delete(f"/api/v1/domains/{domain_id}", headers=tenant.headers).json() == {
        "data": {"deletedMailboxes": 1}
    }
    assert provision(runtime) == 2
    order = client.get(f"/api/v1/orders/{order_id}", headers=tenant.headers).json()["data"]
    assert order["status"] == "completed"
    assert quantities(runtime, tenant.workspace_id) == {"domain": 1, "ip": 1, "mailbox": 1}


def test_in_process_worker_completes_an_order_within_two_seconds(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime)
    first_order(runtime, tenant)
    worker = OrderWorker(runtime)
    runtime.order_placed = worker.wake
    woken: list[bool] = []
    runtime.node_changed = lambda: woken.append(True)
    worker.start()
    try:
        started = time.monotonic()
        name = unique_domain()
        order_id = client.post(
            "/api/v1/domains", headers=tenant.headers, json={"name": name}
        ).json()["data"]["orderId"]
        status = "pending_provision"
        while status == "pending_provision" and time.monotonic() - started < 2.0:
            time.sleep(0.05)
            status = client.get(f"/api/v1/orders/{order_id}", headers=tenant.headers).json()[
                "data"
            ]["status"]
        assert status == "completed"
        assert time.monotonic() - started < 2.0
        assert woken
    finally:
        worker.stop()


def _free_count(runtime: Runtime) -> int:
    with runtime.db.transaction() as session:
        return len(session.scalars(select(DedicatedIp).where(DedicatedIp.status == "free")).all())


def test_claim_skips_orders_within_their_lease(runtime: Runtime, tenant: Tenant) -> None:
    add_inventory(runtime)
    placed = place(runtime, tenant)
    with runtime.db.transaction() as session:
        session.execute(
            update(Order).values(claimed_by="someone", claimed_until=utcnow().replace(year=2999))
        )
    with runtime.db.transaction() as session:
        assert provisioning.claim_next_order(session, worker_id="me", lease_seconds=5) is None
    with runtime.db.transaction() as session:
        session.execute(update(Order).values(claimed_until=utcnow().replace(year=2000)))
    with runtime.db.transaction() as session:
        assert (
            provisioning.claim_next_order(session, worker_id="me", lease_seconds=5)
            == placed.order_id
        )


def test_two_first_orders_at_once_make_one(runtime: Runtime, tenant: Tenant) -> None:
    """The second waits for the first to commit (the workspace lock), then sees its domain."""
    add_inventory(runtime)
    placed, release = threading.Event(), threading.Event()

    def first() -> None:
        with runtime.db.transaction() as session:
            orders.place_first_order(
                session,
                workspace_id=tenant.workspace_id,
                domain=unique_domain(),
                ip_count=1,
                emails=[],
                settings=runtime.settings,
            )
            placed.set()
            release.wait(10)

    def second() -> str:
        try:
            place(runtime, tenant)
        except Conflict:
            return "conflict"
        return "placed"

    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(first)
        assert placed.wait(10)
        two = pool.submit(second)
        time.sleep(0.3)
        assert not two.done()  # waiting for the first order's transaction
        release.set()
        one.result(timeout=10)
        assert two.result(timeout=20) == "conflict"
    with runtime.db.transaction() as session:
        count = session.scalar(
            select(func.count())
            .select_from(Domain)
            .where(Domain.workspace_id == tenant.workspace_id)
        )
    assert count == 1


def test_claims_of_dead_processes_are_freed_and_live_ones_kept(
    runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    add_inventory(runtime)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    holders = {
        "dead": f"{worker_host()}:{gone.pid}:0000",
        "alive": f"{worker_host()}:{os.getpid()}:0000",
        "elsewhere": "another-host:1:0000",
    }
    placed = {}
    for label, holder in holders.items():
        placed[label] = place(runtime, make_tenant()).order_id
        with runtime.db.transaction() as session:
            session.execute(
                update(Order)
                .where(Order.id == placed[label])
                .values(claimed_by=holder, claimed_until=utcnow() + timedelta(hours=1))
            )
    worker = OrderWorker(runtime, poll_seconds=0.05)
    assert worker.resume_dead_claims() == [placed["dead"]]
    assert worker.drain() == 1
    with runtime.db.transaction() as session:
        status = {
            label: session.scalar(select(Order.status).where(Order.id == oid))
            for label, oid in placed.items()
        }
        assert status == {
            "dead": "completed",
            "alive": "pending_provision",
            "elsewhere": "pending_provision",
        }
        kept = provisioning.extend_claim(
            session, order_id=placed["alive"], worker_id=holders["alive"], lease_seconds=5
        )
        assert kept
        assert not provisioning.extend_claim(
            session, order_id=placed["alive"], worker_id="someone:else:1", lease_seconds=5
        )
