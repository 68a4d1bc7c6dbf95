"""The operator CLI on the same settings and database as `serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from adbtd.api.app import create_app
from adbtd.runtime import Runtime
from adbtd.settings import Settings


def run_cli(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ADBTD_DATA_DIR": str(settings.data_dir),
        "ADBTD_DATABASE_URL": settings.resolved_database_url,
    }
    result = subprocess.run(
        [sys.executable, "-m", "adbtd.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_workspace_key_and_revoke_round_trip(settings: Settings, runtime: Runtime) -> None:
    created = json.loads(
        run_cli(
            settings, "workspaces", "create", "acme", "--name", "Acme", "--payment-method"
        ).stdout
    )
    assert created["slug"] == "acme" and created["id"].startswith("ws_")
    assert created["paymentMethod"].startswith("pm_local_")
    out = run_cli(settings, "keys", "create", "acme", "--name", "ci/cd")
    token = out.stdout.strip().splitlines()[-1]
    assert token.startswith("adbtd_live_") and len(token) == len("adbtd_live_") + 43
    with TestClient(create_app(runtime)) as client:
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200
        key_id = me.json()["data"]["apiKey"]["id"]
        run_cli(settings, "keys", "revoke", key_id)
        again = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert again.status_code == 401


def test_errors_exit_nonzero_with_a_clear_message(settings: Settings) -> None:
    run_cli(settings, "workspaces", "create", "acme", "--name", "Acme")
    dup = run_cli(settings, "workspaces", "create", "acme", "--name", "Acme", check=False)
    assert dup.returncode == 1 and "conflict" in dup.stderr and "Traceback" not in dup.stderr
    bad = run_cli(settings, "workspaces", "create", "Not A Slug", "--name", "x", check=False)
    assert bad.returncode == 1 and "validation_error" in bad.stderr
    missing = run_cli(settings, "keys", "create", "nope", "--name", "x", check=False)
    assert missing.returncode == 1 and "not_found" in missing.stderr
    unknown = run_cli(settings, "keys", "revoke", "key_" + "x" * 20, check=False)
    assert unknown.returncode == 1 and "not_found" in unknown.stderr
    malformed = run_cli(settings, "keys", "revoke", "key_doesnotexist", check=False)
    assert malformed.returncode == 1 and "validation_error" in malformed.stderr


def test_cli_writes_while_server_writes(settings: Settings, runtime: Runtime) -> None:
    """SQLite WAL + busy timeout: concurrent CLI processes and API requests all succeed."""
    run_cli(settings, "workspaces", "create", "base", "--name", "Base")
    token = run_cli(settings, "keys", "create", "base", "--name", "k").stdout.split()[-1]
    with TestClient(create_app(runtime)) as client, ThreadPoolExecutor(6) as pool:
        clis = [
            pool.submit(run_cli, settings, "workspaces", "create", f"w{i}", "--name", "W")
            for i in range(4)
        ]
        api = [
            client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            for _ in range(20)
        ]
        assert all(f.result().returncode == 0 for f in clis)
    assert all(r.status_code == 200 for r in api)


@pytest.mark.parametrize("env", [{"ADBTD_ENV": "production", "ADBTD_SECRET_KEY": "changeme"}])
def test_placeholder_secret_refused_in_production(tmp_path: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "adbtd.cli.main", "db", "upgrade"],
        env={**os.environ, "ADBTD_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "ADBTD_SECRET_KEY" in result.stderr and "Traceback" not in result.stderr
