"""The records a domain must publish, and pure parsers and checks for MX, DKIM and DMARC.

Nothing here does I/O: checks take a lookup port (the DNS resolver fits it), so the rules are
testable with a dictionary of records. SPF lives in ``adbtd.services.spf``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from adbtd.services.spf import SpfLookup, evaluate_spf, is_spf

Check = Literal["mx", "spf", "dkim", "dmarc"]
CHECKS: tuple[Check, ...] = ("mx", "spf", "dkim", "dmarc")
MX_PREFERENCE = 10
DMARC_POLICIES = frozenset({"none", "quarantine", "reject"})
RECOMMENDED_DMARC = "v=DMARC1; p=quarantine; adkim=r; aspf=r"
TXT_STRING_MAX = 255
_TAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class RecordError(ValueError):
    """A DKIM or DMARC record that does not parse; the message is the reason shown to users."""


class MxLookup(Protocol):
    def mx(self, name: str) -> list[tuple[int, str]]: ...

    def addresses(self, name: str) -> list[str]: ...


class RecordLookup(SpfLookup, MxLookup, Protocol):
    """Every lookup the four checks make (the DNS resolver port satisfies it)."""


@dataclass(frozen=True)
class RequiredRecord:
    """One record to publish; ``check`` is the verification flag it feeds."""

    check: Check
    type: str
    name: str
    value: str


@dataclass(frozen=True)
class CheckOutcome:
    """A check's answer: ``found`` is what DNS held, ``error`` why it is not right."""

    ok: bool
    error: str | None = None
    found: tuple[str, ...] = ()


def ip_sort_key(ip: str) -> tuple[int, int]:
    """Sort IPv4 before IPv6, each numerically."""
    address = ipaddress.ip_address(ip)
    return address.version, int(address)


def mx_target(domain: str, mx_hostname: str) -> str:
    """The host the domain's MX should name: the node's MX host name, else ``mail.<domain>``."""
    return mx_hostname.strip().rstrip(".").lower() or f"mail.{domain}"


def spf_value(ips: Iterable[str]) -> str:
    """``v=spf1 ip4:… ~all`` authorizing exactly the given addresses."""
    terms = [f"ip{ipaddress.ip_address(ip).version}:{ip}" for ip in sorted(ips, key=ip_sort_key)]
    return " ".join(["v=spf1", *terms, "~all"])


def required_records(
    *,
    domain: str,
    ips: Iterable[str],
    dkim_selector: str,
    dkim_record: str | None,
    mx_hostname: str = "",
) -> list[RequiredRecord]:
    """Everything a domain must publish: MX (+ A for ``mail.<domain>``), SPF, DKIM, DMARC."""
    domain = domain.rstrip(".").lower()
    addresses = sorted(set(ips), key=ip_sort_key)
    target = mx_target(domain, mx_hostname)
    records = [RequiredRecord("mx", "MX", domain, f"{MX_PREFERENCE} {target}")]
    if not mx_hostname.strip():
        records += [
            RequiredRecord(
                "mx", "A" if ipaddress.ip_address(ip).version == 4 else "AAAA", target, ip
            )
            for ip in addresses
        ]
    records.append(RequiredRecord("spf", "TXT", domain, spf_value(addresses)))
    if dkim_record:
        records.append(
            RequiredRecord("dkim", "TXT", f"{dkim_selector}._domainkey.{domain}", dkim_record)
        )
    records.append(RequiredRecord("dmarc", "TXT", f"_dmarc.{domain}", RECOMMENDED_DMARC))
    return records


def txt_strings(value: str) -> list[str]:
    """Split a TXT value into character strings of at most 255 bytes (RFC 1035 section 3.3)."""
    return [value[i : i + TXT_STRING_MAX] for i in range(0, len(value), TXT_STRING_MAX)] or [""]


def parse_tags(text: str, kind: str) -> dict[str, str]:
    """``k=v; k=v`` tag lists (DKIM RFC 6376 section 3.2, DMARC RFC 7489 section 6.4)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not _TAG_NAME.match(name):
            raise RecordError(f"malformed {kind} tag {part!r}")
        if name in tags:
            raise RecordError(f"{kind} tag {name}= appears more than once")
        tags[name] = value.strip()
    return tags


@dataclass(frozen=True)
class DkimRecord:
    key_type: str
    public_key: str
    tags: dict[str, str]


def parse_dkim(text: str) -> DkimRecord:
    """A DKIM key record: ``v=DKIM1`` first if present, ``k`` rsa|ed25519, base64 ``p`` set."""
    tags = parse_tags(text, "DKIM")
    if "v" in tags and (next(iter(tags)) != "v" or tags["v"] != "DKIM1"):
        raise RecordError("DKIM record's v= must come first and be DKIM1")
    if "p" not in tags:
        raise RecordError("DKIM record has no p= tag (public key)")
    key = re.sub(r"\s+", "", tags["p"])
    if not key:
        raise RecordError("DKIM key is revoked (empty p=)")
    try:
        base64.b64decode(key, validate=True)
    except binascii.Error as exc:
        raise RecordError("DKIM p= is not valid base64") from exc
    key_type = tags.get("k", "rsa").lower()
    if key_type not in ("rsa", "ed25519"):
        raise RecordError(f"DKIM key type k={key_type} is not rsa or ed25519")
    return DkimRecord(key_type, key, tags)


@dataclass(frozen=True)
class DmarcRecord:
    policy: str
    tags: dict[str, str]


def is_dmarc(text: str) -> bool:
    return re.match(r"^\s*v\s*=\s*DMARC1\s*(;|$)", text, re.IGNORECASE) is not None


def parse_dmarc(text: str) -> DmarcRecord:
    """A DMARC record: ``v=DMARC1`` first, ``p`` none|quarantine|reject, sane optional tags."""
    tags = parse_tags(text, "DMARC")
    if next(iter(tags), None) != "v" or tags["v"] != "DMARC1":
        raise RecordError("DMARC record must start with v=DMARC1")
    if "p" not in tags:
        raise RecordError("DMARC record has no p= tag (policy: none, quarantine or reject)")
    for name in ("p", "sp"):
        if name in tags and tags[name].lower() not in DMARC_POLICIES:
            raise RecordError(f"DMARC {name}={tags[name]} is not none, quarantine or reject")
    for name in ("adkim", "aspf"):
        if name in tags and tags[name].lower() not in ("r", "s"):
            raise RecordError(f"DMARC {name}={tags[name]} is not r or s")
    if "pct" in tags and not (tags["pct"].isdigit() and 0 <= int(tags["pct"]) <= 100):
        raise RecordError(f"DMARC pct={tags['pct']} is not a number from 0 to 100")
    return DmarcRecord(tags["p"].lower(), tags)


def check_dkim(name: str, txts: list[str], expected_record: str | None) -> CheckOutcome:
    """The TXT at ``<selector>._domainkey.<domain>`` holds exactly our public key."""
    found = tuple(txts)
    if expected_record is None:
        return CheckOutcome(False, "the platform holds no DKIM key for this domain yet", found)
    if not txts:
        return CheckOutcome(False, f"no DKIM record (TXT) at {name}", found)
    if len(txts) > 1:
        return CheckOutcome(False, f"{len(txts)} TXT records at {name}; publish exactly one", found)
    try:
        record = parse_dkim(txts[0])
    except RecordError as exc:
        return CheckOutcome(False, f"invalid DKIM record at {name}: {exc}", found)
    expected = parse_dkim(expected_record).public_key
    if record.public_key != expected:
        return CheckOutcome(
            False,
            f"DKIM key at {name} does not match the platform's key for this domain "
            f"(published p={_abbrev(record.public_key)}, expected p={_abbrev(expected)})",
            found,
        )
    return CheckOutcome(True, None, found)


def _abbrev(key: str) -> str:
    return key if len(key) <= 24 else f"{key[:12]}…{key[-8:]}"


def check_dmarc(name: str, txts: list[str]) -> CheckOutcome:
    """Exactly one valid ``v=DMARC1`` record with a policy at ``_dmarc.<domain>``."""
    records = [t for t in txts if is_dmarc(t)]
    found = tuple(records)
    if not records:
        return CheckOutcome(False, f"no DMARC record (TXT v=DMARC1) at {name}", found)
    if len(records) > 1:
        return CheckOutcome(
            False, f"{len(records)} DMARC records at {name}; publish exactly one", found
        )
    try:
        parse_dmarc(records[0])
    except RecordError as exc:
        return CheckOutcome(False, f"invalid DMARC record at {name}: {exc}", found)
    return CheckOutcome(True, None, found)


def check_spf(domain: str, ips: list[str], lookup: SpfLookup) -> CheckOutcome:
    """Exactly one valid SPF record authorizing every IP within RFC 7208's lookup limits."""
    if not ips:
        return CheckOutcome(False, "the workspace has no dedicated IP to authorize")
    verdict = evaluate_spf(domain, ips, lookup)
    found = tuple(t for t in [verdict.record] if t is not None)
    return CheckOutcome(verdict.ok, verdict.error, found)


def check_mx(
    domain: str, ips: list[str], node_hosts: Iterable[str], lookup: MxLookup
) -> CheckOutcome:
    """Every MX host is one of the node's host names or resolves to a dedicated IP of ours."""
    records = sorted(lookup.mx(domain))
    found = tuple(f"{pref} {host}" for pref, host in records)
    if not records:
        return CheckOutcome(False, f"no MX record at {domain}", found)
    own = {str(ipaddress.ip_address(ip)) for ip in ips}
    ours = {h.strip().rstrip(".").lower() for h in node_hosts} - {""}
    for pref, host in records:
        host = host.rstrip(".").lower()
        if host in ("", "."):
            return CheckOutcome(False, f"{domain} has a null MX: it accepts no mail", found)
        if host in ours:
            continue
        addresses = {str(ipaddress.ip_address(a)) for a in lookup.addresses(host)}
        if not addresses & own:
            resolved = ", ".join(sorted(addresses)) or "nothing"
            return CheckOutcome(
                False,
                f"MX host {host} (preference {pref}) is not this workspace's: it resolves to "
                f"{resolved}, not to a dedicated IP ({', '.join(sorted(own)) or 'none'})",
                found,
            )
    return CheckOutcome(True, None, found)


__all__ = [
    "CHECKS",
    "Check",
    "CheckOutcome",
    "MxLookup",
    "RecordError",
    "RecordLookup",
    "RequiredRecord",
    "check_dkim",
    "check_dmarc",
    "check_mx",
    "check_spf",
    "is_spf",
    "parse_dkim",
    "parse_dmarc",
    "required_records",
    "spf_value",
    "txt_strings",
]
