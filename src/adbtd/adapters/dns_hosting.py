"""The DNS-hosting port: where the platform publishes the records of domains it bought.

A zone is published whole: ``publish_zone`` makes the zone hold exactly the given records
(besides its SOA and NS), so calling it again after an IP change is how records are updated.
``delete_zone`` is idempotent. The local provider only records what it was asked, in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from adbtd.settings import Settings


class DnsHostingError(Exception):
    """The DNS host refused or failed a change; the message carries its answer."""


@dataclass(frozen=True)
class HostedRecord:
    """One record in plain form: ``value`` as a customer would type it (TXT unquoted)."""

    name: str
    type: str
    value: str
    ttl: int = 300


class DnsHosting(Protocol):
    def publish_zone(self, zone: str, records: Sequence[HostedRecord]) -> None:
        """Create ``zone`` if needed and make its records exactly ``records``."""
        ...

    def delete_zone(self, zone: str) -> None:
        """Remove ``zone`` and everything in it; a zone that is not there is fine."""
        ...

    def list_zones(self) -> list[str]:
        """Zones this platform published (others on the same DNS host are not listed)."""
        ...


class LocalDnsHosting:
    """Publishes nowhere; keeps the zones it was given, for tests and the embedded default."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.zones: dict[str, tuple[HostedRecord, ...]] = {}

    def publish_zone(self, zone: str, records: Sequence[HostedRecord]) -> None:
        with self._lock:
            self.zones[_zone_key(zone)] = tuple(records)

    def delete_zone(self, zone: str) -> None:
        with self._lock:
            self.zones.pop(_zone_key(zone), None)

    def list_zones(self) -> list[str]:
        with self._lock:
            return sorted(self.zones)


def _zone_key(zone: str) -> str:
    return zone.rstrip(".").lower()


def build_dns_hosting(settings: Settings) -> DnsHosting:
    """The DNS host of this deployment: PowerDNS's HTTP API (also when we run our own
    pdns_server) or the local recorder."""
    if settings.dns_hosting_provider == "pdns" or settings.pdns_local:
        from adbtd.adapters.pdns import PowerDnsHosting

        return PowerDnsHosting(
            settings.pdns_api_url,
            settings.pdns_key,
            server_id=settings.pdns_server_id,
            timeout=settings.dns_timeout_seconds,
        )
    return LocalDnsHosting()
