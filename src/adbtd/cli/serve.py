"""``adbtd serve``: migrate, start background components, then serve HTTP until stopped."""

from __future__ import annotations

import logging
from typing import Protocol

import uvicorn

from adbtd.api.app import create_app
from adbtd.db.migrate import upgrade
from adbtd.runtime import Runtime
from adbtd.settings import Settings

log = logging.getLogger("adbtd.serve")


class Component(Protocol):
    """Something ``serve`` runs beside HTTP: the mail node, the order worker."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def background_components(runtime: Runtime) -> list[Component]:
    """The components this process runs, by settings."""
    return []


def run_server(settings: Settings) -> None:
    """Serve until interrupted; components stop in reverse order on the way out."""
    upgrade(settings.resolved_database_url)
    runtime = Runtime.from_settings(settings)
    components = background_components(runtime)
    started: list[Component] = []
    try:
        for component in components:
            component.start()
            started.append(component)
        base = settings.base_url
        print(
            f"adbtd is up: API {base}/api/v1 (OpenAPI {base}/api/v1/openapi.json), "
            f"dashboard {base}/dashboard, data in {settings.data_dir.resolve()}",
            flush=True,
        )
        uvicorn.run(
            create_app(runtime),
            host=settings.http_host,
            port=settings.http_port,
            log_level="info",
            access_log=False,
        )
    finally:
        for component in reversed(started):
            try:
                component.stop()
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)
        runtime.close()
