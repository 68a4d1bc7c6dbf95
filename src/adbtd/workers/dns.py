"""The DNS worker: publishes bought domains' zones, verifies domains, checks IP reputation.

Each round: publish managed domains never published (and, every ``dns_retry_seconds``, those
whose records changed); verify domains never checked, due by ``dns_verify_interval_seconds`` or
whose last check timed out ``dns_retry_seconds`` ago; check IPs due by
``reputation_interval_seconds``. Every check gets a fresh resolver, so nothing is cached.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from adbtd.adapters.dns_hosting import DnsHosting, DnsHostingError, build_dns_hosting
from adbtd.adapters.dns_resolver import DnsResolver, build_resolver
from adbtd.adapters.pdns_server import PowerDnsServer
from adbtd.clock import utcnow
from adbtd.errors import NotFound
from adbtd.runtime import Runtime
from adbtd.services import dns_publish, dns_verify, reputation
from adbtd.settings import Settings
from adbtd.workers.background import BackgroundLoop

log = logging.getLogger("adbtd.dns")

BATCH = 100
# One domain's lookups together never take longer than this, however slow the resolvers are.
CHECK_BUDGET_SECONDS = 60.0
REPUTATION_CHUNK = 10  # IPs checked with one resolver (one budget)


@dataclass
class DnsRound:
    """What one round did (for tests and logs)."""

    published: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    reputation_checked: int = 0
    errors: list[str] = field(default_factory=list)


class DnsWorker(BackgroundLoop):
    """Runs rounds in a thread until stopped; ``wake`` starts the next round now."""

    thread_name = "dns-worker"
    join_seconds = 15.0

    def __init__(
        self,
        runtime: Runtime,
        *,
        resolver_factory: Callable[[], DnsResolver] | None = None,
        hosting: DnsHosting | None = None,
        poll_seconds: float | None = None,
    ) -> None:
        super().__init__()
        settings = runtime.settings
        self.runtime = runtime
        self.resolver_factory = resolver_factory or (
            lambda: build_resolver(settings, budget_seconds=CHECK_BUDGET_SECONDS)
        )
        self.managed_resolver_factory = resolver_factory or (
            lambda: build_resolver(settings, budget_seconds=CHECK_BUDGET_SECONDS, managed=True)
        )
        self.hosting = hosting or build_dns_hosting(settings)
        self.poll_seconds = poll_seconds or settings.dns_poll_seconds
        self._last_compare = 0.0
        # IPs no blocklist answered for in their last round: tried again after the DNS retry
        # delay, not at every poll (their last_reputation_at, a real check's time, stays).
        self._reputation_retry: dict[str, float] = {}

    def run(self) -> None:
        log.info("DNS worker started")
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("DNS worker: round failed")
            self.nap(self.poll_seconds)
        log.info("DNS worker stopped")

    def run_once(self) -> DnsRound:
        """One round of publishing, verification and reputation checks."""
        done = DnsRound()
        self._publish(done)
        self._verify(done)
        self._reputation(done)
        return done

    def _publish(self, done: DnsRound) -> None:
        settings = self.runtime.settings
        compare = time.monotonic() - self._last_compare >= settings.dns_retry_seconds
        if compare:
            self._last_compare = time.monotonic()
        if compare:
            try:
                done.removed = dns_publish.remove_orphan_zones(
                    self.runtime.db, hosting=self.hosting
                )
            except DnsHostingError as exc:
                log.warning("removing zones of deleted domains failed: %s", exc)
                done.errors.append(str(exc))
        due = dns_publish.domains_to_publish(self.runtime.db, settings=settings, compare=compare)
        for domain_id in due[:BATCH]:
            if self._stop.is_set():
                return
            try:
                if dns_publish.publish_domain(
                    self.runtime.db, domain_id=domain_id, settings=settings, hosting=self.hosting
                ):
                    done.published.append(domain_id)
            except (DnsHostingError, NotFound) as exc:
                log.warning("publishing %s failed: %s", domain_id, exc)
                done.errors.append(f"{domain_id}: {exc}")

    def _verify(self, done: DnsRound) -> None:
        settings = self.runtime.settings
        with self.runtime.db.transaction() as session:
            due = dns_verify.domains_due(
                session,
                now=utcnow(),
                interval_seconds=settings.dns_verify_interval_seconds,
                retry_seconds=settings.dns_retry_seconds,
            )
        for domain_id in due[:BATCH]:
            if self._stop.is_set():
                return
            try:
                dns_verify.verify_domain(
                    self.runtime.db,
                    domain_id=domain_id,
                    settings=settings,
                    resolver=self.resolver_factory(),
                    managed_resolver=self.managed_resolver_factory(),
                )
                done.verified.append(domain_id)
            except NotFound:
                continue

    def _reputation(self, done: DnsRound) -> None:
        settings = self.runtime.settings
        zones = settings.dnsbl_zone_list
        with self.runtime.db.transaction() as session:
            reputation.forget_unwatched_lists(session, zones=zones, now=utcnow())
            if not zones:
                return
            due = reputation.ips_due(
                session, now=utcnow(), interval_seconds=settings.reputation_interval_seconds
            )
        clock = time.monotonic()
        due = [ip_id for ip_id in due if self._reputation_retry.get(ip_id, 0.0) <= clock][:BATCH]
        for start in range(0, len(due), REPUTATION_CHUNK):
            if self._stop.is_set():
                return
            summary = reputation.check_reputation(
                self.runtime.db,
                resolver=self.resolver_factory(),
                zones=zones,
                ip_ids=due[start : start + REPUTATION_CHUNK],
            )
            done.reputation_checked += summary.checked
            retry_at = time.monotonic() + settings.dns_retry_seconds
            for ip_id in due[start : start + REPUTATION_CHUNK]:
                if ip_id in summary.undecided:
                    self._reputation_retry[ip_id] = retry_at
                else:
                    self._reputation_retry.pop(ip_id, None)
            if summary.listed:
                log.warning("blocklisted IPs: %s", ", ".join(summary.listed))


class LocalPowerDns:
    """``serve``'s own pdns_server (``ADBTD_PDNS_LOCAL``): zones of bought domains on loopback."""

    def __init__(self, settings: Settings) -> None:
        api = urllib.parse.urlsplit(settings.pdns_api_url)
        self.server = PowerDnsServer(
            settings.data_dir / "pdns",
            api_key=settings.pdns_key,
            dns_port=settings.pdns_dns_port,
            api_port=api.port or 8081,
            address=api.hostname or "127.0.0.1",
        )

    def start(self) -> None:
        self.server.start()
        log.info("PowerDNS: DNS on %s, API on %s", self.server.dns_address, self.server.api_url)

    def stop(self) -> None:
        self.server.stop()
