"""CLI for resources, and crash safety of the worker process (killed with SIGKILL mid-order)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from sqlalchemy import select

from adbtd.db.models import DedicatedIp, Domain, Mailbox, Order
from adbtd.runtime import Runtime
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.integration.test_cli import run_cli
from tests.support.resources import add_inventory, quantities, unique_domain

WAIT_SECONDS = 30


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "ADBTD_DATA_DIR": str(settings.data_dir),
        "ADBTD_DATABASE_URL": settings.resolved_database_url,
        "ADBTD_RUN_MAILNODE": "false",
    }


@pytest.fixture
def spawn_worker(
    settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``adbtd worker`` processes; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "adbtd.cli.main", "worker", "--poll-seconds", "0.1", *args],
            env=cli_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def order_row(runtime: Runtime, order_id: str) -> Order:
    with runtime.db.transaction() as session:
        order = session.get(Order, order_id)
        assert order is not None
        return order


def test_orders_create_password_and_ips_add(settings: Settings, runtime: Runtime) -> None:
    run_cli(settings, "workspaces", "create", "acme", "--name", "Acme", "--payment-method")
    added = run_cli(settings, "ips", "add", "127.0.7.1-127.0.7.3", "127.0.7.9", "127.0.8.0/30")
    assert "added 6 address(es)" in added.stdout
    again = run_cli(settings, "ips", "add", "127.0.7.1")
    assert "added 0 address(es) on node main; 1 already" in again.stdout
    bad = run_cli(settings, "ips", "add", "300.1.1.1", check=False)
    assert bad.returncode == 1 and "validation_error" in bad.stderr
    east = run_cli(settings, "ips", "add", "127.0.7.20-127.0.7.21", "--node", "mx-east")
    assert "added 2 address(es) on node mx-east" in east.stdout
    for node in ("MX_East", "-east", "x" * 64, ""):
        refused = run_cli(settings, "ips", "add", "127.0.7.30", "--node", node, check=False)
        assert refused.returncode == 1 and "validation_error" in refused.stderr, node
    with runtime.db.transaction() as session:
        nodes = dict(session.execute(select(DedicatedIp.address, DedicatedIp.node)).all())
    assert nodes["127.0.7.1"] == "main" and nodes["127.0.7.20"] == nodes["127.0.7.21"] == "mx-east"
    assert "127.0.7.30" not in nodes
    name = unique_domain()
    out = run_cli(
        settings,
        "orders",
        "create",
        "acme",
        "--domain",
        name,
        "--ips",
        "2",
        "--mailbox",
        f"alice@{name}",
        "--mailbox",
        f"bob@{name}",
    )
    placed = json.loads(out.stdout)
    assert placed["status"] == "pending_provision" and placed["ips"] == 2
    assert placed["emails"] == [f"alice@{name}", f"bob@{name}"]
    pending = run_cli(settings, "mailboxes", "password", f"alice@{name}", check=False)
    assert pending.returncode == 1 and "not_found" in pending.stderr
    assert "processed 1 order(s)" in run_cli(settings, "worker", "--once").stdout
    password = run_cli(settings, "mailboxes", "password", f"ALICE@{name}").stdout.splitlines()[-1]
    with runtime.db.transaction() as session:
        mailbox = session.scalar(select(Mailbox).where(Mailbox.email == f"alice@{name}"))
        assert mailbox is not None and mailbox.password_hash is not None
    assert bcrypt.checkpw(password.encode(), mailbox.password_hash.split("}", 1)[1].encode())
    dup = run_cli(settings, "orders", "create", "acme", "--domain", name, check=False)
    assert dup.returncode == 1 and "conflict" in dup.stderr and "Traceback" not in dup.stderr


def test_orders_create_syncs_the_configured_pool(settings: Settings, runtime: Runtime) -> None:
    run_cli(settings, "workspaces", "create", "acme", "--name", "Acme", "--payment-method")
    name = unique_domain()
    run_cli(settings, "orders", "create", "acme", "--domain", name, "--ips", "1")
    with runtime.db.transaction() as session:
        count = len(session.scalars(select(DedicatedIp)).all())
    assert count == 20  # the embedded default pool 127.0.1.1-127.0.1.20


def test_the_configured_pool_joins_this_process_node(
    settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADBTD_NODE_NAME", "mx-east")
    monkeypatch.setenv("ADBTD_IP_POOL", "127.0.7.1-127.0.7.2")
    run_cli(settings, "workspaces", "create", "acme", "--name", "Acme", "--payment-method")
    run_cli(settings, "orders", "create", "acme", "--domain", unique_domain(), "--ips", "1")
    with runtime.db.transaction() as session:
        rows = session.execute(select(DedicatedIp.address, DedicatedIp.node, DedicatedIp.status))
        nodes = {address: (node, status) for address, node, status in rows}
    assert nodes == {"127.0.7.1": ("mx-east", "reserved"), "127.0.7.2": ("mx-east", "free")}


def test_worker_killed_mid_order_leaves_nothing_half_done(
    runtime: Runtime,
    tenant: Tenant,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    from adbtd.services import orders

    add_inventory(runtime)
    name = unique_domain()
    with runtime.db.transaction() as session:
        placed = orders.place_first_order(
            session,
            workspace_id=tenant.workspace_id,
            domain=name,
            ip_count=2,
            emails=[f"a@{name}", f"b@{name}"],
            settings=runtime.settings,
        )
    # The default 60 s lease: the survivor must see that the claim's process is gone.
    doomed = spawn_worker("--pause-before-apply", "120")
    wait_until(lambda: order_row(runtime, placed.order_id).claimed_by is not None, "the claim")
    time.sleep(1.0)  # well inside the pause: keys and hashes are made, nothing applied
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    order = order_row(runtime, placed.order_id)
    assert order.status == "pending_provision" and order.attempts == 1
    with runtime.db.transaction() as session:
        domain = session.scalars(select(Domain)).one()
        assert domain.status == "pending_provision" and domain.dkim_private_key_encrypted is None
        assert {m.password_hash for m in session.scalars(select(Mailbox))} == {None}
        held = session.scalars(select(DedicatedIp).where(DedicatedIp.order_id == order.id)).all()
        assert [ip.status for ip in held] == ["reserved", "reserved"]
    survivor = spawn_worker("--lease-seconds", "30")
    wait_until(lambda: order_row(runtime, placed.order_id).status == "completed", "completion")
    order = order_row(runtime, placed.order_id)
    assert order.attempts == 2 and order.claimed_by is None
    with runtime.db.transaction() as session:
        domain = session.scalars(select(Domain)).one()
        assert domain.status == "unverified" and domain.dkim_private_key_encrypted
        boxes = session.scalars(select(Mailbox)).all()
        assert {m.status for m in boxes} == {"active"}
        assert all(m.password_hash and m.password_encrypted and m.ip_id for m in boxes)
        held = session.scalars(select(DedicatedIp).where(DedicatedIp.order_id == order.id)).all()
        assert [ip.status for ip in held] == ["assigned", "assigned"]
        assert all(ip.allocated_at for ip in held)
    assert quantities(runtime, tenant.workspace_id) == {"domain": 1, "ip": 2, "mailbox": 2}
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(20) == 0


def test_two_worker_processes_share_the_queue_without_overlap(
    runtime: Runtime,
    make_tenant: Callable[..., Tenant],
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    from adbtd.services import orders

    add_inventory(runtime)
    spawn_worker()
    spawn_worker()
    ids = []
    for _ in range(6):
        tenant = make_tenant()
        name = unique_domain()
        with runtime.db.transaction() as session:
            ids.append(
                orders.place_first_order(
                    session,
                    workspace_id=tenant.workspace_id,
                    domain=name,
                    ip_count=1,
                    emails=[f"a@{name}"],
                    settings=runtime.settings,
                ).order_id
            )

    def all_done() -> bool:
        return all(order_row(runtime, i).status == "completed" for i in ids)

    wait_until(all_done, "all orders")
    assert all(order_row(runtime, i).attempts == 1 for i in ids)
