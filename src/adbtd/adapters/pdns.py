"""PowerDNS Authoritative's HTTP API as the DNS-hosting port (``api=yes``, ``X-API-Key``).

Zones are ``Native`` (no AXFR). Publishing reads the zone's RRsets, replaces every one we want
and deletes every other one except SOA and NS, in one PATCH, so a zone never holds stale records.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from adbtd.adapters.dns_hosting import DnsHostingError, HostedRecord

KEPT_TYPES = frozenset({"SOA", "NS"})
ACCOUNT = "adbtd"  # marks the zones we created, so we never touch anyone else's
TXT_STRING_MAX = 255


def fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def presentation(record: HostedRecord) -> str:
    """The record's content as PowerDNS wants it: FQDNs end in a dot, TXT is quoted and split."""
    if record.type == "TXT":
        raw = record.value
        chunks = [raw[i : i + TXT_STRING_MAX] for i in range(0, len(raw), TXT_STRING_MAX)]
        return " ".join(
            '"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks or [""]
        )
    if record.type == "MX":
        preference, _, host = record.value.partition(" ")
        return f"{int(preference)} {fqdn(host)}"
    if record.type in ("CNAME", "NS"):
        return fqdn(record.value)
    return record.value


class PowerDnsHosting:
    """One PowerDNS server's zones through its HTTP API."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        server_id: str = "localhost",
        timeout: float = 10.0,
        nameservers: Sequence[str] = (),
    ) -> None:
        self._base = f"{api_url.rstrip('/')}/api/v1/servers/{urllib.parse.quote(server_id)}"
        self._key = api_key
        self._timeout = timeout
        self._nameservers = [fqdn(ns) for ns in nameservers]

    def _call(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's setting
            self._base + path, data=data, method=method
        )
        request.add_header("X-API-Key", self._key)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw).get("error", raw.decode(errors="replace"))
            except ValueError:
                detail = raw.decode(errors="replace")
            return exc.code, {"error": detail}
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DnsHostingError(f"PowerDNS API {method} {path} failed: {exc}") from exc

    def _zone_path(self, zone: str) -> str:
        return "/zones/" + urllib.parse.quote(fqdn(zone), safe="")

    def zone_rrsets(self, zone: str) -> list[dict[str, Any]] | None:
        """The zone's RRsets, or None when PowerDNS does not have the zone."""
        found = self._zone(zone)
        if found is None:
            return None
        rrsets: list[dict[str, Any]] = found.get("rrsets", [])
        return rrsets

    def _zone(self, zone: str) -> dict[str, Any] | None:
        status, body = self._call("GET", self._zone_path(zone))
        if status in (404, 422):
            return None
        _expect(status, body, "read zone", zone)
        return body if isinstance(body, dict) else {}

    def publish_zone(self, zone: str, records: Sequence[HostedRecord]) -> None:
        """Create or update the zone; a zone someone else made on this server is left alone."""
        wanted = _rrsets(records)
        found = self._zone(zone)
        if found is not None and found.get("account") != ACCOUNT:
            raise DnsHostingError(
                f"PowerDNS already has a zone {zone} that adbtd did not make "
                f"(account {found.get('account')!r}); it is left as it is"
            )
        existing = found.get("rrsets", []) if found is not None else None
        if existing is None:
            status, body = self._call(
                "POST",
                "/zones",
                {
                    "name": fqdn(zone),
                    "kind": "Native",
                    "account": ACCOUNT,
                    "nameservers": self._nameservers,
                    "rrsets": [dict(r, changetype="REPLACE") for r in wanted],
                },
            )
            if status != 409:
                _expect(status, body, "create zone", zone)
                return
            existing = self.zone_rrsets(zone) or []
        keys = {(r["name"], r["type"]) for r in wanted}
        stale = [
            {"name": r["name"], "type": r["type"], "changetype": "DELETE"}
            for r in existing
            if r["type"] not in KEPT_TYPES and (r["name"], r["type"]) not in keys
        ]
        changes = [dict(r, changetype="REPLACE") for r in wanted] + stale
        status, body = self._call("PATCH", self._zone_path(zone), {"rrsets": changes})
        _expect(status, body, "update zone", zone)

    def list_zones(self) -> list[str]:
        status, body = self._call("GET", "/zones")
        _expect(status, body, "list zones", "")
        return sorted(
            z["name"].rstrip(".").lower()
            for z in body or []
            if isinstance(z, dict) and z.get("account") == ACCOUNT
        )

    def delete_zone(self, zone: str) -> None:
        """Delete the zone if it is adbtd's (marked with its account); others are never touched."""
        found = self._zone(zone)
        if found is None or found.get("account") != ACCOUNT:
            return
        status, body = self._call("DELETE", self._zone_path(zone))
        if status in (404, 422):
            return
        _expect(status, body, "delete zone", zone)


def _rrsets(records: Sequence[HostedRecord]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[HostedRecord]] = {}
    for record in records:
        grouped.setdefault((fqdn(record.name), record.type), []).append(record)
    return [
        {
            "name": name,
            "type": rtype,
            "ttl": min(r.ttl for r in group),
            "records": [{"content": presentation(r), "disabled": False} for r in group],
        }
        for (name, rtype), group in grouped.items()
    ]


def _expect(status: int, body: Any, what: str, zone: str) -> None:
    if not 200 <= status < 300:
        detail = body.get("error") if isinstance(body, dict) else body
        raise DnsHostingError(f"PowerDNS could not {what} {zone}: HTTP {status} {detail}")
