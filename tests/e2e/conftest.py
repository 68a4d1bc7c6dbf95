"""Browser tests run on SQLite only (the integration suite covers PostgreSQL), to stay quick."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adbtd.runtime import Runtime
from adbtd.settings import Settings
from tests.e2e.harness import LiveServer, chromium, free_port
from tests.support.localstripe import localstripe_server, stripe_prices

__all__ = ["chromium", "localstripe_server", "stripe_prices"]

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(tmp_path: Path, sqlite_template: Path) -> str:
    target = tmp_path / "adbtd.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def live_server(settings_factory: Callable[..., Settings]) -> Iterator[LiveServer]:
    """The whole app on a loopback port; its public base URL is that address."""
    port = free_port()
    settings = settings_factory(public_base_url=f"http://127.0.0.1:{port}")
    runtime = Runtime.from_settings(settings)
    server = LiveServer(runtime, port)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        runtime.close()
