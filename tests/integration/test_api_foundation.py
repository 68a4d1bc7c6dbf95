"""The API skeleton: /me, the error envelope on every failure path, keys, rate limits."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import select

from adbtd.api.app import create_app
from adbtd.api.errors import MAX_BODY_BYTES
from adbtd.db.models import ApiKey
from adbtd.runtime import Runtime
from adbtd.services import api_keys
from adbtd.settings import Settings
from tests.conftest import Tenant


def assert_envelope(response: object, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers["x-request-id"].startswith("req_")  # type: ignore[attr-defined]
    return body["error"]  # type: ignore[no-any-return]


def test_me_exactly_as_reference(client: TestClient, tenant: Tenant) -> None:
    response = client.get("/api/v1/me", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json() == {
        "data": {
            "workspace": {
                "id": tenant.workspace_id,
                "slug": tenant.slug,
                "name": tenant.slug.title(),
                "currency": "usd",
            },
            "apiKey": {"id": tenant.key_id, "name": "test"},
        }
    }
    assert response.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwdw==",
        "Bearer adbtd_live_short",
        "Bearer adbtd_live_" + "x" * 43,
        "bearer  " + "adbtd_live_" + "?" * 43,
        "Bearer ünï",
    ],
)
def test_missing_malformed_or_unknown_keys_are_401(
    client: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.encode()}
    response = client.get("/api/v1/me", headers=headers)
    assert_envelope(response, 401, "unauthorized")


def test_revoked_key_refused_on_next_request(
    client: TestClient, tenant: Tenant, runtime: Runtime
) -> None:
    assert client.get("/api/v1/me", headers=tenant.headers).status_code == 200
    with runtime.db.transaction() as session:
        api_keys.revoke_key(session, key_id=tenant.key_id)
    assert_envelope(client.get("/api/v1/me", headers=tenant.headers), 401, "unauthorized")


def test_key_sees_only_its_own_workspace(
    client: TestClient, make_tenant: Callable[..., Tenant]
) -> None:
    first, second = make_tenant(), make_tenant()
    me1 = client.get("/api/v1/me", headers=first.headers).json()["data"]
    me2 = client.get("/api/v1/me", headers=second.headers).json()["data"]
    assert me1["workspace"]["id"] == first.workspace_id
    assert me2["workspace"]["id"] == second.workspace_id


def test_unknown_route_and_wrong_method(client: TestClient, tenant: Tenant) -> None:
    assert_envelope(client.get("/api/v1/nope", headers=tenant.headers), 404, "not_found")
    assert_envelope(client.delete("/api/v1/me", headers=tenant.headers), 405, "method_not_allowed")
    assert_envelope(client.get("/api/v1/nope"), 401, "unauthorized")


def test_unexpected_exception_is_500_with_request_id_and_logged(
    runtime: Runtime, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(runtime)
    router = APIRouter()

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    api = app.routes[0].app  # type: ignore[attr-defined]
    api.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/boom", headers=tenant.headers)
    error = assert_envelope(response, 500, "internal_error")
    assert error["requestId"] == response.headers["x-request-id"]
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert any(error["requestId"] in rec.getMessage() for rec in caplog.records)
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(response.headers)


def test_rate_limit_burst_then_429_with_headers(
    settings_factory: Callable[..., Settings],
) -> None:
    runtime = Runtime.from_settings(
        settings_factory(rate_default_burst=5, rate_default_per_minute=6)
    )
    try:
        with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
            tenant = _tenant_on(runtime)
            responses = [client.get("/api/v1/me", headers=tenant.headers) for _ in range(5)]
            assert [r.status_code for r in responses] == [200] * 5
            assert [r.headers["ratelimit-remaining"] for r in responses] == [
                "4",
                "3",
                "2",
                "1",
                "0",
            ]
            assert all(r.headers["ratelimit-limit"] == "5" for r in responses)
            limited = client.get("/api/v1/me", headers=tenant.headers)
            assert_envelope(limited, 429, "rate_limited")
            assert 1 <= int(limited.headers["retry-after"]) <= 10
            assert limited.headers["ratelimit-remaining"] == "0"
    finally:
        runtime.close()


def test_each_route_draws_from_its_bucket_and_429_comes_before_400(
    settings_factory: Callable[..., Settings],
) -> None:
    runtime = Runtime.from_settings(
        settings_factory(
            rate_default_burst=3, rate_send_burst=1, rate_fetch_burst=2, rate_send_per_minute=1
        )
    )
    try:
        with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
            tenant = _tenant_on(runtime)
            send = "/api/v1/mailboxes/mb_" + "x" * 20 + "/send"
            first = client.post(send, headers=tenant.headers, json={})
            assert first.status_code == 400 and first.headers["ratelimit-limit"] == "1"
            # The send bucket is empty: a malformed body is not even read (429 before 400).
            broken = {**tenant.headers, "Content-Type": "application/json"}
            limited = client.post(send, headers=broken, content=b"{not json")
            assert_envelope(limited, 429, "rate_limited")
            assert "send bucket" in limited.json()["error"]["message"]
            fetch = "/api/v1/mailboxes/mb_" + "x" * 20 + "/messages"
            assert [client.get(fetch, headers=tenant.headers).status_code for _ in range(3)] == [
                404,
                404,
                429,
            ]
            me = client.get("/api/v1/me", headers=tenant.headers)  # the default bucket is apart
            assert me.status_code == 200 and me.headers["ratelimit-limit"] == "3"
            missing = client.get("/api/v1/domains/dom_" + "x" * 20, headers=tenant.headers)
            assert missing.status_code == 404 and "ratelimit-remaining" in missing.headers
    finally:
        runtime.close()


def _tenant_on(runtime: Runtime) -> Tenant:
    from adbtd.services import workspaces

    with runtime.db.transaction() as session:
        ws = workspaces.create_workspace(session, slug="rl", name="Rl")
        created = api_keys.create_key(session, workspace_id=ws.id, name="k")
        return Tenant(ws.id, "rl", created.key.id, created.token)


def test_auth_is_checked_before_rate_limit_and_body(client: TestClient) -> None:
    response = client.post(
        "/api/v1/mailboxes", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_envelope(response, 401, "unauthorized")


def test_openapi_is_public_and_lists_me(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert "/me" in spec["paths"]
    assert spec["servers"] == [{"url": "/api/v1"}]


def test_last_used_is_recorded(client: TestClient, tenant: Tenant, runtime: Runtime) -> None:
    with runtime.db.transaction() as session:
        assert session.get(ApiKey, tenant.key_id).last_used_at is None  # type: ignore[union-attr]
    client.get("/api/v1/me", headers=tenant.headers)
    with runtime.db.transaction() as session:
        assert session.get(ApiKey, tenant.key_id).last_used_at is not None  # type: ignore[union-attr]


def test_database_holds_no_plaintext_key(
    client: TestClient, tenant: Tenant, runtime: Runtime, settings: Settings
) -> None:
    secret_part = tenant.token.removeprefix("adbtd_live_")
    with runtime.db.transaction() as session:
        stored = session.scalars(select(ApiKey)).all()
    assert all(secret_part not in (k.token_sha256 + k.display_prefix + k.name) for k in stored)
    assert secret_part not in database_dump(runtime, settings)
    assert stored[0].display_prefix == secret_part[:8]


def database_dump(runtime: Runtime, settings: Settings) -> str:
    """Every byte the database holds, as text: the SQLite files, or pg_dump's output."""
    url = runtime.db.url
    if url.startswith("sqlite"):
        runtime.db.dispose()
        path = Path(url.removeprefix("sqlite:///"))
        return "".join(p.read_bytes().decode("latin-1") for p in path.parent.glob(path.name + "*"))
    from tests.support.postgres import pg_bindir

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    out = subprocess.run(
        [str(pg_bindir() / "pg_dump"), plain], capture_output=True, text=True, check=True
    )
    assert "CREATE TABLE" in out.stdout
    return out.stdout


def test_openapi_declares_bearer_auth(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearerAuth": []}]


def test_openapi_never_promises_422(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    statuses = {s for op in spec["paths"].values() for o in op.values() for s in o["responses"]}
    assert "422" not in statuses
    assert "400" in statuses
    assert "HTTPValidationError" not in spec.get("components", {}).get("schemas", {})


def test_every_error_code_of_the_tree_has_a_status() -> None:
    import adbtd.errors as tree
    from adbtd.api.errors import STATUS_BY_CODE

    codes = {
        cls.code
        for cls in vars(tree).values()
        if isinstance(cls, type) and issubclass(cls, tree.AdbtdError)
    }
    assert codes <= set(STATUS_BY_CODE)


def test_a_body_over_the_limit_is_413_unread(client: TestClient, tenant: Tenant) -> None:
    huge = b'{"to": "a@b.test", "subject": "s", "text": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = client.post(
        "/api/v1/mailboxes/mb_" + "x" * 20 + "/send",
        content=huge,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    error = assert_envelope(response, 413, "payload_too_large")
    assert str(MAX_BODY_BYTES) in str(error["message"])
    assert "ratelimit-remaining" in response.headers


def test_a_streamed_body_over_the_limit_is_413_too(client: TestClient, tenant: Tenant) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"to": "a@b.test", "subject": "s", "text": "'
        for _ in range(MAX_BODY_BYTES // (1 << 20) + 1):
            yield b"x" * (1 << 20)
        yield b'"}'

    response = client.post(
        "/api/v1/mailboxes/mb_" + "x" * 20 + "/send",
        content=chunks(),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert_envelope(response, 413, "payload_too_large")
