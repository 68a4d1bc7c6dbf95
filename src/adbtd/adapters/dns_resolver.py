"""The DNS resolver port and its dnspython adapter.

Lookups answer "nothing there" with an empty list (NXDOMAIN, no data); only a resolver that
cannot answer raises: ``DnsTimeout`` when no server replied in time, ``DnsServerFailure`` when
they replied with an error. Nothing is cached across resolvers; build one per check.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Protocol

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from adbtd.settings import Settings

DEFAULT_PORT = 53


class DnsLookupError(Exception):
    """A lookup that got no usable answer; ``name`` and ``rdtype`` say which."""

    def __init__(self, message: str, *, name: str, rdtype: str) -> None:
        super().__init__(message)
        self.name = name
        self.rdtype = rdtype


class DnsTimeout(DnsLookupError):
    """No resolver answered in time: the record is unknown, not wrong."""


class DnsServerFailure(DnsLookupError):
    """The resolvers answered with an error (SERVFAIL, REFUSED) or an unusable reply."""


class DnsResolver(Protocol):
    """What checks need from DNS; names are absolute or relative to the root."""

    def txt(self, name: str) -> list[str]:
        """TXT records, each with its character strings joined (RFC 7208 section 3.3)."""
        ...

    def mx(self, name: str) -> list[tuple[int, str]]:
        """MX records as ``(preference, exchange)`` with the exchange lowercased, no dot."""
        ...

    def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of a name."""
        ...

    def a(self, name: str) -> list[str]:
        """A addresses only (DNSBL answers)."""
        ...


def parse_resolvers(spec: str) -> list[tuple[str, int]]:
    """``"127.0.0.1:5353, 10.0.0.1, [::1]:53"`` → ``[(address, port), …]``; invalid raises."""
    servers: list[tuple[str, int]] = []
    for raw in spec.replace(" ", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        host, port = _split_host_port(item)
        ipaddress.ip_address(host)
        if not 0 < port < 65536:
            raise ValueError(f"bad DNS resolver port in {item!r}")
        servers.append((host, port))
    return servers


def _split_host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if item.count(":") == 1:
        host, _, port = item.partition(":")
        return host, int(port)
    return item, DEFAULT_PORT


class DnspythonResolver:
    """dnspython against the given servers (system resolvers when none), no cache."""

    def __init__(
        self,
        servers: list[tuple[str, int]] | None = None,
        *,
        timeout: float = 5.0,
        attempts: int = 2,
        budget_seconds: float | None = None,
    ) -> None:
        self._servers = list(servers or [])
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._deadline = None if budget_seconds is None else time.monotonic() + budget_seconds

    def _resolver(self, lifetime: float) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=not self._servers)
        if self._servers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in self._servers
            ]
        resolver.cache = None
        resolver.timeout = lifetime
        resolver.lifetime = lifetime
        resolver.retry_servfail = False
        return resolver

    def _lifetime(self) -> float:
        """The per-query limit, cut short by what is left of the whole check's budget."""
        if self._deadline is None:
            return self._timeout
        return min(self._timeout, self._deadline - time.monotonic())

    def _query(self, name: str, rdtype: str) -> list[dns.rdata.Rdata]:
        qname = dns.name.from_text(name)
        last = DnsTimeout(f"no time left to look up {name} {rdtype}", name=name, rdtype=rdtype)
        for _ in range(self._attempts):
            lifetime = self._lifetime()
            if lifetime <= 0:
                break
            try:
                answer = self._resolver(lifetime).resolve(qname, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                return []
            except dns.exception.Timeout as exc:
                last = DnsTimeout(
                    f"no DNS answer for {name} {rdtype} within {self._timeout:g}s",
                    name=name,
                    rdtype=rdtype,
                )
                last.__cause__ = exc
                continue
            except dns.resolver.NoNameservers as exc:
                raise DnsServerFailure(
                    f"DNS servers failed to answer {name} {rdtype}", name=name, rdtype=rdtype
                ) from exc
            except dns.exception.DNSException as exc:
                raise DnsServerFailure(
                    f"DNS lookup of {name} {rdtype} failed: {exc}", name=name, rdtype=rdtype
                ) from exc
            return list(answer)
        raise last

    def txt(self, name: str) -> list[str]:
        return [
            b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
            for rdata in self._query(name, "TXT")
        ]

    def mx(self, name: str) -> list[tuple[int, str]]:
        return [
            (
                int(rdata.preference),  # type: ignore[attr-defined]
                rdata.exchange.to_text(omit_final_dot=True).lower(),  # type: ignore[attr-defined]
            )
            for rdata in self._query(name, "MX")
        ]

    def a(self, name: str) -> list[str]:
        return [rdata.to_text() for rdata in self._query(name, "A")]

    def addresses(self, name: str) -> list[str]:
        return self.a(name) + [rdata.to_text() for rdata in self._query(name, "AAAA")]


def managed_resolver_spec(settings: Settings) -> str:
    """Resolvers for managed domains, by the precedence ``build_resolver`` documents."""
    if settings.managed_dns_resolvers:
        return settings.managed_dns_resolvers
    if settings.pdns_local:
        return f"127.0.0.1:{settings.pdns_dns_port}"
    return settings.dns_resolvers


def build_resolver(
    settings: Settings, *, budget_seconds: float | None = None, managed: bool = False
) -> DnspythonResolver:
    """A fresh resolver from ``ADBTD_DNS_RESOLVERS`` (system resolvers when unset).

    ``managed=True`` is for domains the platform publishes itself: ``ADBTD_MANAGED_DNS_RESOLVERS``,
    else the platform's own ``pdns_server`` when it runs one (a name bought on the embedded
    default is delegated nowhere, so only its authoritative server can answer), else the same as
    any domain. ``budget_seconds`` bounds all lookups made through it together.
    """
    return DnspythonResolver(
        parse_resolvers(managed_resolver_spec(settings) if managed else settings.dns_resolvers),
        timeout=settings.dns_timeout_seconds,
        attempts=settings.dns_attempts,
        budget_seconds=budget_seconds,
    )
