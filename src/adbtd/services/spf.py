"""SPF (RFC 7208): a pure parser and an evaluator that asks a lookup port for the records it needs.

``evaluate_spf`` answers "does this domain's SPF authorize each of these IPs, within the limit of
10 DNS-querying terms and 2 void lookups?" It walks the whole record tree (every ``include``,
``a``, ``mx``, ``exists`` and ``redirect`` up to the first ``all``), counting lookups the way a
receiver would, then runs check_host() per IP over what it found.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Protocol

MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_NAMES = 10
QUALIFIER_RESULTS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
LOOKUP_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})
_MODIFIER = re.compile(r"^([A-Za-z][A-Za-z0-9_.\-]*)=(.*)$")
_MECHANISM = re.compile(r"^([+\-~?]?)([A-Za-z][A-Za-z0-9_.\-]*)(.*)$")
_MACRO = re.compile(r"%\{[slodiphcrtvSLODIPHCRTV][0-9]*[rR]?[.\-+,/_=]*\}|%%|%_|%-")
_DUAL_CIDR = re.compile(r"^(?:/([0-9]{1,2}))?(?://([0-9]{1,3}))?$")
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SpfError(ValueError):
    """An SPF record or tree that a receiver would reject (permerror); the message says why."""


class SpfLookup(Protocol):
    """The DNS the evaluator needs; the resolver port satisfies it."""

    def txt(self, name: str) -> list[str]: ...

    def mx(self, name: str) -> list[tuple[int, str]]: ...

    def addresses(self, name: str) -> list[str]: ...


@dataclass(frozen=True)
class SpfMechanism:
    """One directive: qualifier, mechanism, its target domain or network and CIDR lengths."""

    qualifier: str
    kind: str
    domain: str | None = None
    network: Network | None = None
    cidr4: int = 32
    cidr6: int = 128

    @property
    def text(self) -> str:
        if self.network is not None:
            return f"{self.kind}:{self.network}"
        return self.kind + (f":{self.domain}" if self.domain else "")


@dataclass(frozen=True)
class SpfRecord:
    mechanisms: tuple[SpfMechanism, ...]
    redirect: str | None = None
    exp: str | None = None


def is_spf(text: str) -> bool:
    """Whether a TXT string is an SPF record (``v=spf1`` alone or followed by a space)."""
    head = text.strip().lower()
    return head == "v=spf1" or head.startswith("v=spf1 ")


def parse_spf(text: str) -> SpfRecord:
    """Parse one ``v=spf1`` record; ``SpfError`` names the first bad term."""
    if not is_spf(text):
        raise SpfError("SPF record must start with v=spf1")
    mechanisms: list[SpfMechanism] = []
    modifiers: dict[str, str] = {}
    for term in text.strip().split(" ")[1:]:
        if not term:
            continue
        modifier = _MODIFIER.match(term)
        if modifier:
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name in modifiers and name in ("redirect", "exp"):
                raise SpfError(f"SPF modifier {name}= appears more than once")
            if name in ("redirect", "exp"):
                _check_domain_spec(value, term)
            modifiers[name] = value
            continue
        mechanisms.append(_parse_mechanism(term))
    return SpfRecord(tuple(mechanisms), modifiers.get("redirect"), modifiers.get("exp"))


def _parse_mechanism(term: str) -> SpfMechanism:
    match = _MECHANISM.match(term)
    if not match:
        raise SpfError(f"invalid SPF term {term!r}")
    qualifier, kind, rest = match.group(1) or "+", match.group(2).lower(), match.group(3)
    if kind not in MECHANISMS:
        raise SpfError(f"unknown SPF mechanism {term!r}")
    if kind == "all":
        if rest:
            raise SpfError(f"invalid SPF term {term!r}: all takes no argument")
        return SpfMechanism(qualifier, kind)
    if kind in ("ip4", "ip6"):
        return SpfMechanism(qualifier, kind, network=_parse_network(kind, rest, term))
    domain: str | None = None
    if rest.startswith(":"):
        spec, slash, cidr = rest[1:].partition("/")
        domain = spec
        rest = slash + cidr
        _check_domain_spec(domain, term)
    elif kind in ("include", "exists"):
        raise SpfError(f"invalid SPF term {term!r}: {kind} needs a domain")
    if kind in ("a", "mx"):
        cidr = _DUAL_CIDR.match(rest)
        if not cidr:
            raise SpfError(f"invalid SPF term {term!r}: bad CIDR length")
        cidr4 = int(cidr.group(1)) if cidr.group(1) else 32
        cidr6 = int(cidr.group(2)) if cidr.group(2) else 128
        if cidr4 > 32 or cidr6 > 128:
            raise SpfError(f"invalid SPF term {term!r}: CIDR length out of range")
        return SpfMechanism(qualifier, kind, domain, cidr4=cidr4, cidr6=cidr6)
    if rest:
        raise SpfError(f"invalid SPF term {term!r}")
    return SpfMechanism(qualifier, kind, domain)


def _parse_network(kind: str, rest: str, term: str) -> Network:
    if not rest.startswith(":") or len(rest) < 2:
        raise SpfError(f"invalid SPF term {term!r}: {kind} needs an address")
    try:
        network = ipaddress.ip_network(rest[1:], strict=False)
    except ValueError as exc:
        raise SpfError(f"invalid SPF term {term!r}: not an IP address or network") from exc
    if (kind == "ip4") != isinstance(network, ipaddress.IPv4Network):
        raise SpfError(f"invalid SPF term {term!r}: wrong address family for {kind}")
    return network


def _check_domain_spec(spec: str, term: str) -> None:
    """A domain-spec: a host name, or a macro-string (RFC 7208 section 7.1)."""
    if not spec:
        raise SpfError(f"invalid SPF term {term!r}: empty domain")
    without_macros = _MACRO.sub("x", spec)
    if "%" in without_macros:
        raise SpfError(f"invalid SPF term {term!r}: bad macro")
    if without_macros != spec:
        return
    labels = spec.rstrip(".").split(".")
    if (
        len(spec) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise SpfError(f"invalid SPF term {term!r}: {spec!r} is not a domain name")


@dataclass
class _Node:
    """A record reached while walking: what each mechanism matches, and the redirect's node."""

    domain: str
    record: SpfRecord
    terms: list[tuple[SpfMechanism, frozenset[Network] | _Node | bool]] = field(
        default_factory=list
    )
    redirect: _Node | None = None


@dataclass(frozen=True)
class SpfVerdict:
    """Whether every IP is authorized; ``results`` is check_host() per IP."""

    ok: bool
    error: str | None
    record: str | None
    lookups: int
    results: dict[str, str]


class _Walker:
    def __init__(self, lookup: SpfLookup) -> None:
        self.lookup = lookup
        self.lookups = 0
        self.voids = 0
        self.macros: list[str] = []  # terms with macros: they depend on each sender, not checked

    def count(self, what: str) -> None:
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise SpfError(
                f"SPF needs more than {MAX_LOOKUPS} DNS lookups (RFC 7208 section 4.6.4); "
                f"the limit is reached at {what}"
            )

    def void(self, name: str) -> None:
        self.voids += 1
        if self.voids > MAX_VOID_LOOKUPS:
            raise SpfError(
                f"SPF makes more than {MAX_VOID_LOOKUPS} lookups that find nothing "
                f"(RFC 7208 section 4.6.4), the last one for {name}"
            )

    def record_for(self, domain: str, via: str) -> tuple[str, SpfRecord]:
        records = [t for t in self.lookup.txt(domain) if is_spf(t)]
        if not records:
            raise SpfError(f"{via} points at {domain}, which has no SPF record")
        if len(records) > 1:
            raise SpfError(f"{domain} (reached by {via}) has {len(records)} SPF records")
        try:
            return records[0], parse_spf(records[0])
        except SpfError as exc:
            raise SpfError(f"SPF record of {domain} (reached by {via}): {exc}") from exc

    def walk(self, domain: str, record: SpfRecord) -> _Node:
        node = _Node(domain, record)
        for mech in record.mechanisms:
            node.terms.append((mech, self._resolve(domain, mech)))
            if mech.kind == "all":
                return node
        if record.redirect is not None:
            self.count(f"redirect={record.redirect}")
            target = _target(record.redirect, domain)
            if "%" in target:
                self.macros.append(f"redirect={record.redirect}")
            else:
                node.redirect = self.walk(target, self.record_for(target, "redirect=")[1])
        return node

    def _resolve(self, domain: str, mech: SpfMechanism) -> frozenset[Network] | _Node | bool:
        if mech.kind == "all":
            return True
        if mech.network is not None:
            return frozenset({mech.network})
        self.count(mech.text)
        target = _target(mech.domain, domain)
        if "%" in target:
            self.macros.append(mech.text)
            return False  # a macro names a different host for each sender
        if mech.kind == "include":
            return self.walk(target, self.record_for(target, mech.text)[1])
        if mech.kind == "ptr":
            return False  # discouraged (RFC 7208 section 5.5) and never counted on
        if mech.kind == "exists":
            found = bool(self.lookup.addresses(target))
            if not found:
                self.void(target)
            return found
        hosts = [target]
        if mech.kind == "mx":
            hosts = [host for _, host in self.lookup.mx(target)]
            if len(hosts) > MAX_MX_NAMES:
                raise SpfError(f"{mech.text} finds more than {MAX_MX_NAMES} MX hosts")
            if not hosts:
                self.void(target)
        networks = frozenset(
            _widen(address, mech) for host in hosts for address in self.lookup.addresses(host)
        )
        if mech.kind == "a" and not networks:
            self.void(target)
        return networks


def _target(spec: str | None, domain: str) -> str:
    return (spec or domain).rstrip(".").lower()


def _widen(address: str, mech: SpfMechanism) -> Network:
    ip = ipaddress.ip_address(address)
    length = mech.cidr4 if ip.version == 4 else mech.cidr6
    return ipaddress.ip_network(f"{ip}/{length}", strict=False)


def check_host(node: _Node, ip: str) -> str:
    """RFC 7208 check_host() over a walked tree: pass, fail, softfail or neutral."""
    address = ipaddress.ip_address(ip)
    for mech, target in node.terms:
        if isinstance(target, _Node):
            matched = check_host(target, ip) == "pass"
        elif isinstance(target, bool):
            matched = target
        else:
            matched = any(address in network for network in target)
        if matched:
            return QUALIFIER_RESULTS[mech.qualifier]
    if node.redirect is not None:
        return check_host(node.redirect, ip)
    return "neutral"


def evaluate_spf(domain: str, ips: list[str], lookup: SpfLookup) -> SpfVerdict:
    """Exactly one valid SPF record at ``domain`` that passes every IP within the limits."""
    domain = domain.rstrip(".").lower()
    records = [t for t in lookup.txt(domain) if is_spf(t)]
    if not records:
        return SpfVerdict(False, f"no SPF record (TXT v=spf1) at {domain}", None, 0, {})
    if len(records) > 1:
        return SpfVerdict(
            False,
            f"{len(records)} SPF records at {domain}; exactly one is allowed (RFC 7208 "
            "section 3.2), merge them into one",
            " | ".join(records),
            0,
            {},
        )
    walker = _Walker(lookup)
    try:
        tree = walker.walk(domain, parse_spf(records[0]))
    except SpfError as exc:
        return SpfVerdict(False, f"invalid SPF: {exc}", records[0], walker.lookups, {})
    results = {ip: check_host(tree, ip) for ip in ips}
    missing = [f"{ip} ({result})" for ip, result in results.items() if result != "pass"]
    if missing:
        unchecked = (
            f" (terms with macros are not evaluated: {', '.join(walker.macros)})"
            if walker.macros
            else ""
        )
        return SpfVerdict(
            False,
            "SPF does not authorize "
            + ", ".join(missing)
            + f"; add ip4:<address> for each{unchecked}",
            records[0],
            walker.lookups,
            results,
        )
    return SpfVerdict(True, None, records[0], walker.lookups, results)
