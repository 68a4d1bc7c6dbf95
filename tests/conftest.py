"""Fixtures shared by every suite: databases on SQLite and PostgreSQL, a runtime, an API client.

Every database-touching test runs once per engine in ``ADBTD_TEST_DATABASES`` (default both).
Each test gets its own database cloned from a migrated template, and its own data directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from adbtd.api.app import create_app
from adbtd.db.migrate import upgrade
from adbtd.runtime import Runtime
from adbtd.services import api_keys, billing, workspaces
from adbtd.settings import Settings, build_settings
from tests.support.postgres import PostgresCluster, start_cluster

ENGINES = [
    e.strip()
    for e in os.environ.get("ADBTD_TEST_DATABASES", "sqlite,postgresql").split(",")
    if e.strip()
]
PG_TEMPLATE = "adbtd_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = start_cluster()
    try:
        upgrade_pg_template(cluster)
        yield cluster
    finally:
        cluster.stop()


def upgrade_pg_template(cluster: PostgresCluster) -> None:
    admin = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {PG_TEMPLATE}"))
    admin.dispose()
    upgrade(cluster.url(PG_TEMPLATE))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database of this test's own."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "adbtd.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    name = "t_" + secrets.token_hex(6)
    admin = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}"))
    try:
        yield cluster.url(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    """Settings for this test's workspace; keyword overrides win."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "run_mailnode": False,
            "run_worker": False,
        }
        values.update(overrides)
        return build_settings(**values)

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.from_settings(settings)
    yield rt
    rt.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class Tenant:
    """A workspace with one live API key, as a test sees it."""

    workspace_id: str
    slug: str
    key_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_tenant(runtime: Runtime) -> Callable[..., Tenant]:
    """Create a workspace + key; ``payment_method=True`` records a local payment method."""

    def make(slug: str | None = None, *, payment_method: bool = True) -> Tenant:
        slug = slug or "t" + secrets.token_hex(4)
        with runtime.db.transaction() as session:
            ws = workspaces.create_workspace(session, slug=slug, name=slug.title())
            if payment_method:
                billing.record_payment_method(session, workspace_id=ws.id)
            created = api_keys.create_key(session, workspace_id=ws.id, name="test")
            return Tenant(ws.id, slug, created.key.id, created.token)

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant()
