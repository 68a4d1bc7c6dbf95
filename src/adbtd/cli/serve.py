"""``adbtd serve``: migrate, start background components, then serve HTTP until stopped."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import threading
from collections.abc import Iterator
from typing import Protocol

import uvicorn

from adbtd.api.app import create_app
from adbtd.db.migrate import upgrade
from adbtd.runtime import Runtime
from adbtd.services import inventory
from adbtd.settings import Settings

log = logging.getLogger("adbtd.serve")


class Component(Protocol):
    """Something ``serve`` runs beside HTTP: the mail node, the order worker."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def background_components(runtime: Runtime) -> list[Component]:
    """The components this process runs, by settings: the mail node first, then workers."""
    components: list[Component] = []
    if runtime.settings.run_mailnode:
        from adbtd.workers.mailnode import DatabaseMailNode

        components.append(DatabaseMailNode(runtime))
    if runtime.settings.run_worker:
        from adbtd.workers.billing import BillingPusher
        from adbtd.workers.orders import OrderWorker

        components.append(BillingPusher(runtime))

        order_worker = OrderWorker(runtime)
        runtime.order_placed = order_worker.wake
        components.append(order_worker)
    if runtime.settings.pdns_local:
        from adbtd.workers.dns import LocalPowerDns

        components.append(LocalPowerDns(runtime.settings))
    if runtime.settings.run_dns_worker:
        from adbtd.workers.dns import DnsWorker

        components.append(DnsWorker(runtime))
    return components


def start_components(components: list[Component]) -> list[Component]:
    """Start in order; on a failure stop what started and exit with the reason, never hang."""
    started: list[Component] = []
    for component in components:
        try:
            component.start()
        except Exception as exc:
            log.exception("%s failed to start", type(component).__name__)
            stop_components(started)
            raise SystemExit(f"error: {type(component).__name__} failed to start: {exc}") from exc
        started.append(component)
    return started


def stop_components(started: list[Component]) -> None:
    for component in reversed(started):
        try:
            component.stop()
        except Exception:
            log.exception("stopping %s failed", type(component).__name__)


class HttpServer(uvicorn.Server):
    """uvicorn's server, minus one step: after a graceful shutdown uvicorn raises the captured
    SIGTERM again, which kills the process before ``serve`` can stop its mail daemons."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def run_until_signalled(components: list[Component], what: str) -> None:
    """Start components and block until SIGINT or SIGTERM, then stop them in reverse."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = start_components(components)
    print(f"adbtd {what} is running; stop with Ctrl-C", flush=True)
    try:
        stop.wait()
    finally:
        stop_components(started)


def embedded_defaults(settings: Settings) -> Settings:
    """On the embedded default, publish bought domains on our own PowerDNS when it is installed.

    Explicit ``ADBTD_PDNS_LOCAL`` / ``ADBTD_DNS_HOSTING_PROVIDER`` settings always win.
    """
    chosen = settings.model_fields_set
    if settings.env != "embedded" or "pdns_local" in chosen:
        return settings
    if shutil.which("pdns_server", path="/usr/sbin:/usr/bin:/sbin") is None:
        log.warning("pdns_server is not installed; bought domains are not published locally")
        return settings
    update: dict[str, object] = {"pdns_local": True}
    if "dns_hosting_provider" not in chosen:
        update["dns_hosting_provider"] = "pdns"
    return settings.model_copy(update=update)


def run_server(settings: Settings) -> None:
    """Serve until interrupted; components stop in reverse order on the way out."""
    settings = embedded_defaults(settings)
    upgrade(settings.resolved_database_url)
    runtime = Runtime.from_settings(settings)
    with runtime.db.transaction() as session:
        inventory.sync_pool(session, ip_pool=settings.ip_pool, node=settings.node_name)
    started: list[Component] = []
    try:
        started = start_components(background_components(runtime))
        base = settings.base_url
        print(
            f"adbtd is up: API {base}/api/v1 (OpenAPI {base}/api/v1/openapi.json), "
            f"dashboard {base}/dashboard, data in {settings.data_dir.resolve()}",
            flush=True,
        )
        config = uvicorn.Config(
            create_app(runtime),
            host=settings.http_host,
            port=settings.http_port,
            log_level="info",
            access_log=False,
        )
        HttpServer(config).run()
    finally:
        stop_components(started)
        runtime.close()
