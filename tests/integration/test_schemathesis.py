"""Property-based API tests: schemathesis over the app's own OpenAPI spec, every route.

Each operation gets a small, bounded number of generated requests (valid and invalid) with a
valid key, against a workspace that holds real resources. No response may be a 5xx, and every
response must match the status codes, content type and schema the spec declares.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation.case import Case
from schemathesis.generation.modes import GenerationMode
from sqlalchemy import select

from adbtd.api.app import create_api, create_app
from adbtd.db.engine import Database
from adbtd.db.models import DedicatedIp, Domain
from adbtd.runtime import Runtime
from adbtd.services import api_keys, billing, workspaces
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.integration.conftest import RunningNode
from tests.support.mail_env import node_settings, provision_mail
from tests.support.resources import add_inventory, first_order

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 12
# 5xx answers the reference defines: the mail servers refuse (a recipient nobody hosts, say),
# and the inventory runs out.
DOCUMENTED_5XX = {502: {"smtp_error", "imap_error"}, 503: {"inventory_unavailable"}}


def no_unexpected_server_error(ctx: Any, response: Any, case: Case) -> bool | None:
    """Like schemathesis' ``not_a_server_error``, but a documented 502/503 is an answer."""
    if response.status_code < 500:
        return None
    body = response.json()
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    assert code in DOCUMENTED_5XX.get(response.status_code, set()), (
        f"{case.operation.label}: server error {response.status_code} {code}"
    )
    return None


CHECKS = [
    no_unexpected_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture
def fuzz_runtime(
    settings_factory: Callable[..., Settings], mailnode: RunningNode
) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(
        node_settings(
            settings_factory,
            mailnode,
            rate_default_burst=1_000_000,
            rate_default_per_minute=1_000_000,
            rate_send_burst=1_000_000,
            rate_send_per_minute=1_000_000,
            rate_fetch_burst=1_000_000,
            rate_fetch_per_minute=1_000_000,
        )
    )
    yield runtime
    runtime.close()


@dataclass
class FuzzTenant:
    headers: dict[str, str]
    ids: dict[str, str]  # path parameter name → an id of a real resource of this workspace


@pytest.fixture
def fuzz_tenant(fuzz_runtime: Runtime, mailnode: RunningNode, dkim_key: str) -> FuzzTenant:
    """A paying workspace with a provisioned first order and a mailbox live on the real node
    holding one message, its key and its resources' ids: the mail routes answer for real."""
    add_inventory(fuzz_runtime, "127.0.9.1-127.0.9.40")
    with fuzz_runtime.db.transaction() as session:
        ws = workspaces.create_workspace(session, slug="fuzz", name="Fuzz")
        billing.record_payment_method(session, workspace_id=ws.id)
        created = api_keys.create_key(session, workspace_id=ws.id, name="fuzz")
    tenant = Tenant(ws.id, ws.slug, created.key.id, created.token)
    placed = first_order(fuzz_runtime, tenant, domain="fuzz.test", emails=["alice@fuzz.test"])
    live = provision_mail(fuzz_runtime, tenant, mailnode, dkim_key, names=("carol",))
    carol = live.boxes["carol"]
    uid = live.append(carol, b"Subject: fuzzed\r\nFrom: a@b.test\r\n\r\nhello\r\n")
    with fuzz_runtime.db.transaction() as session:
        ids = {
            "domain_id": session.scalars(select(Domain.id).where(Domain.name == "fuzz.test")).one(),
            "ip_id": session.scalars(
                select(DedicatedIp.id).where(
                    DedicatedIp.workspace_id == ws.id, DedicatedIp.address != live.ip
                )
            ).one(),
            "mailbox_id": carol.id,
            "order_id": placed.order_id,
            "uid": str(uid),
        }
    return FuzzTenant(tenant.headers, ids)


def spec_operations() -> list[tuple[str, str, GenerationMode, bool]]:
    """Every operation of the spec, read at collection time: positive cases with random and
    with real path ids; negative cases where any input besides path ids can be wrong (ids are
    free-form strings, so there is no "invalid" id to generate)."""
    runtime = Runtime(settings=Settings(secret_key="x" * 40), db=Database("sqlite://"))
    paths = create_api(runtime).openapi()["paths"]
    cases = []
    for path, item in sorted(paths.items()):
        for method, operation in sorted(item.items()):
            cases.append((method.upper(), path, GenerationMode.POSITIVE, False))
            if "{" in path:
                cases.append((method.upper(), path, GenerationMode.POSITIVE, True))
            params = operation.get("parameters", [])
            typed_path = any(
                p["in"] == "path" and p.get("schema", {}).get("type") != "string" for p in params
            )
            if "requestBody" in operation or typed_path or any(p["in"] == "query" for p in params):
                cases.append((method.upper(), path, GenerationMode.NEGATIVE, False))
    return cases


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: the engines are compared elsewhere; this test is about the HTTP contract."""
    target = tmp_path / "fuzz.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.mark.parametrize(("method", "path", "mode", "real_ids"), spec_operations())
def test_api_conforms_to_its_openapi_spec(
    fuzz_runtime: Runtime,
    fuzz_tenant: FuzzTenant,
    method: str,
    path: str,
    mode: GenerationMode,
    real_ids: bool,
) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(fuzz_runtime))
    operation = schema[path][method]
    names = re.findall(r"{(\w+)}", path)
    bound = {name: fuzz_tenant.ids[name] for name in names if real_ids and name in fuzz_tenant.ids}
    if real_ids and not bound:
        pytest.skip(f"{path} takes no id of a resource this fixture holds")

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=bound or None))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Case) -> None:
        case.call_and_validate(headers=fuzz_tenant.headers, checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        pytest.skip(f"{method} {path} has no input that {mode.value} generation can vary")
