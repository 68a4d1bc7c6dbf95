"""Mailboxes: GET/POST /mailboxes, GET/DELETE /mailboxes/:id, passwords, node state."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import bcrypt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from adbtd.db.models import Mailbox
from adbtd.runtime import Runtime
from adbtd.services import mailboxes
from adbtd.services.node_state import load_node_state
from tests.conftest import Tenant
from tests.integration.test_api_foundation import assert_envelope
from tests.support.resources import (
    ISO_MS,
    MAILBOX_KEYS,
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
    first_order(runtime, tenant, domain=f"{tenant.slug}.test")
    return tenant


def domain_of(tenant: Tenant) -> str:
    return f"{tenant.slug}.test"


def test_create_list_and_read_mailboxes(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    name = domain_of(ready)
    emails = [f"Bob@{name.upper()}", f"carol.x+tag@{name}"]
    response = client.post("/api/v1/mailboxes", headers=ready.headers, json={"emails": emails})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"orderId", "status", "emails"}
    assert data["status"] == "pending_provision"
    assert data["emails"] == [f"bob@{name}", f"carol.x+tag@{name}"]
    pending = client.get("/api/v1/mailboxes", headers=ready.headers).json()["data"]
    assert sorted(m["status"] for m in pending) == [
        "active",
        "pending_provision",
        "pending_provision",
    ]
    assert provision(runtime) == 1
    listed = client.get("/api/v1/mailboxes", headers=ready.headers).json()["data"]
    assert [m["email"] for m in listed] == [f"alice@{name}", f"bob@{name}", f"carol.x+tag@{name}"]
    ip = client.get("/api/v1/ips", headers=ready.headers).json()["data"][0]["address"]
    for mailbox in listed:
        assert set(mailbox) == MAILBOX_KEYS
        assert mailbox["id"].startswith("mb_") and mailbox["status"] == "active"
        assert mailbox["smtpHost"] == mailbox["imapHost"] == ip
        assert mailbox["submissionPort"] == runtime.settings.submission_port
        assert mailbox["imapPort"] == runtime.settings.imap_port
        assert re.match(ISO_MS, mailbox["createdAt"])
        one = client.get(f"/api/v1/mailboxes/{mailbox['id']}", headers=ready.headers)
        assert one.json() == {"data": mailbox}
    assert quantities(runtime, ready.workspace_id)["mailbox"] == 3


def test_passwords_are_hashed_and_sealed_never_returned(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    email = f"alice@{domain_of(ready)}"
    with runtime.db.transaction() as session:
        plain = mailboxes.mailbox_password(
            session, email=email, secret_key=runtime.settings.secret_key
        )
        row = session.scalars(select(Mailbox)).one()
        state = load_node_state(session, secret_key=runtime.settings.secret_key)
    assert len(plain) >= 32
    assert row.password_hash is not None and row.password_hash.startswith("{BLF-CRYPT}")
    assert bcrypt.checkpw(plain.encode(), row.password_hash.removeprefix("{BLF-CRYPT}").encode())
    assert row.password_encrypted is not None and plain not in row.password_encrypted
    assert [(m.email, m.password_hash) for m in state.mailboxes] == [(email, row.password_hash)]
    texts = [
        client.get("/api/v1/mailboxes", headers=ready.headers).text,
        client.get(f"/api/v1/mailboxes/{row.id}", headers=ready.headers).text,
        client.get("/api/v1/orders", headers=ready.headers).text,
    ]
    assert all(plain not in text and "BLF" not in text for text in texts)


def test_mailboxes_spread_over_the_workspace_ips(
    client: TestClient, runtime: Runtime, tenant: Tenant
) -> None:
    add_inventory(runtime)
    name = domain_of(tenant)
    first_order(runtime, tenant, domain=name, ips=3, emails=[f"u{i}@{name}" for i in range(6)])
    hosts = [
        m["smtpHost"]
        for m in client.get("/api/v1/mailboxes", headers=tenant.headers).json()["data"]
    ]
    assert sorted(hosts.count(h) for h in set(hosts)) == [2, 2, 2]


@pytest.mark.parametrize(
    "emails",
    [
        ["not-an-address"],
        ["@acme.test"],
        ["a@"],
        ["a b@{d}"],
        ["a@@{d}"],
        ["a..b@{d}"],
        [".a@{d}"],
        ['"quoted"@{d}'],
        ["ü@{d}"],
        ["a@{d}\n"],
        ["a@{d}\r\nBcc: x@y.test"],
        ["a\x00@{d}"],
        ["x" * 65 + "@{d}"],
        ["a@[127.0.0.1]"],
        ["a@localhost"],
        ["a@{d}", "A@{d}"],
        ["a@{d}", "b@{d}", "a@{d}"],
    ],
)
def test_invalid_or_duplicate_addresses_are_400(
    client: TestClient, runtime: Runtime, ready: Tenant, emails: list[str]
) -> None:
    emails = [e.replace("{d}", domain_of(ready)) for e in emails]
    before = snapshot(runtime)
    response = client.post("/api/v1/mailboxes", headers=ready.headers, json={"emails": emails})
    assert_envelope(response, 400, "validation_error")
    assert snapshot(runtime) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"emails": []},
        {"emails": "a@x.test"},
        {"emails": [1]},
        {"emails": [None]},
        {"emails": [["a@x.test"]]},
        {"emails": ["a@x.test"], "password": "hunter2"},
        {"email": "a@x.test"},
        {"emails": [f"u{i}@x.test" for i in range(101)]},
        {"emails": ["a" * 400 + "@x.test"]},
    ],
)
def test_bad_bodies_are_400(client: TestClient, runtime: Runtime, ready: Tenant, body: Any) -> None:
    before = snapshot(runtime)
    response = client.post("/api/v1/mailboxes", headers=ready.headers, json=body)
    assert_envelope(response, 400, "validation_error")
    assert snapshot(runtime) == before


def test_huge_array_is_400_without_work(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    before = snapshot(runtime)
    emails = [f"u{i}@{domain_of(ready)}" for i in range(50_000)]
    response = client.post("/api/v1/mailboxes", headers=ready.headers, json={"emails": emails})
    assert_envelope(response, 400, "validation_error")
    assert snapshot(runtime) == before


def test_hundred_mailboxes_in_one_order(
    client: TestClient, runtime: Runtime, ready: Tenant
) -> None:
    emails = [f"u{i}@{domain_of(ready)}" for i in range(100)]
    response = client.post("/api/v1/mailboxes", headers=ready.headers, json={"emails": emails})
    assert response.status_code == 200
    assert provision(runtime) == 1
    assert quantities(runtime, ready.workspace_id)["mailbox"] == 101


def test_domain_must_be_on_this_workspace(
    client: TestClient, runtime: Runtime, ready: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant()
    first_order(runtime, other, domain=domain_of(other))
    before = snapshot(runtime)
    for emails in (
        [f"x@{domain_of(other)}"],
        ["x@unknown-domain.test"],
        [f"ok@{domain_of(ready)}", f"x@{domain_of(other)}"],
    ):
        response = client.post("/api/v1/mailboxes", headers=ready.headers, json={"emails": emails})
        assert_envelope(response, 409, "conflict")
    assert snapshot(runtime) == before


def test_existing_address_is_409(client: TestClient, runtime: Runtime, ready: Tenant) -> None:
    before = snapshot(runtime)
    for emails in (
        [f"alice@{domain_of(ready)}"],
        [f"new@{domain_of(ready)}", f"ALICE@{domain_of(ready)}"],
    ):
        response = client.post("/api/v1/mailboxes", headers=ready.headers, json={"emails": emails})
        assert_envelope(response, 409, "conflict")
    assert snapshot(runtime) == before


def test_payment_method_before_conflict(
    client: TestClient, runtime: Runtime, make_tenant: Callable[..., Tenant]
) -> None:
    broke = make_tenant(payment_method=False)
    response = client.post(
        "/api/v1/mailboxes", headers=broke.headers, json={"emails": ["a@x.test"]}
    )
    error = assert_envelope(response, 402, "payment_required")
    assert "checkoutUrl" in error


def test_delete_mailbox(client: TestClient, runtime: Runtime, ready: Tenant) -> None:
    mailbox = client.get("/api/v1/mailboxes", headers=ready.headers).json()["data"][0]
    revision = node_revision(runtime)
    response = client.delete(f"/api/v1/mailboxes/{mailbox['id']}", headers=ready.headers)
    assert response.status_code == 200
    assert response.json() == {"data": {"deleted": mailbox["email"]}}
    assert node_revision(runtime) > revision
    assert quantities(runtime, ready.workspace_id)["mailbox"] == 0
    with runtime.db.transaction() as session:
        assert load_node_state(session, secret_key=runtime.settings.secret_key).mailboxes == ()
    assert_envelope(
        client.get(f"/api/v1/mailboxes/{mailbox['id']}", headers=ready.headers), 404, "not_found"
    )
    assert_envelope(
        client.delete(f"/api/v1/mailboxes/{mailbox['id']}", headers=ready.headers), 404, "not_found"
    )
    again = client.post(
        "/api/v1/mailboxes", headers=ready.headers, json={"emails": [mailbox["email"]]}
    )
    assert again.status_code == 200


def test_other_workspace_mailbox_is_404_and_untouched(
    client: TestClient, runtime: Runtime, ready: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    intruder = make_tenant()
    mailbox_id = client.get("/api/v1/mailboxes", headers=ready.headers).json()["data"][0]["id"]
    before = snapshot(runtime)
    for method in ("GET", "DELETE"):
        response = client.request(
            method, f"/api/v1/mailboxes/{mailbox_id}", headers=intruder.headers
        )
        assert_envelope(response, 404, "not_found")
    assert snapshot(runtime) == before
    assert client.get("/api/v1/mailboxes", headers=intruder.headers).json() == {"data": []}


@pytest.mark.parametrize(
    "bad_id", ["1", "mb_", "ord_" + "a" * 20, "mb_" + "-" * 20, "mb_" + "a" * 200]
)
def test_wrong_mailbox_id_shapes_are_400(
    client: TestClient, runtime: Runtime, ready: Tenant, bad_id: str
) -> None:
    before = snapshot(runtime)
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/api/v1/mailboxes/{bad_id}", headers=ready.headers)
        assert_envelope(response, 400, "validation_error")
    assert snapshot(runtime) == before
