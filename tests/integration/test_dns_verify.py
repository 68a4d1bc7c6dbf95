"""Domain verification against a real authoritative DNS server (dnslib, UDP + TCP, loopback)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from adbtd.adapters.dns_resolver import build_resolver
from adbtd.clock import iso_ms, utcnow
from adbtd.db.models import Domain
from adbtd.runtime import Runtime
from adbtd.services.dns_verify import dns_records_out, domains_due, verify_domain
from adbtd.settings import Settings
from tests.conftest import Tenant
from tests.support.dns_seed import (
    SELECTOR,
    SeededDomain,
    add_domain,
    add_ips,
    publish_correct_records,
)
from tests.support.dns_server import DnsTestServer, running_dns_server, silent_udp_port

IP = "203.0.113.7"


@pytest.fixture
def dns() -> Iterator[DnsTestServer]:
    with running_dns_server() as server:
        yield server


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], dns: DnsTestServer) -> Settings:
    return settings_factory(
        dns_resolvers=dns.address,
        dns_timeout_seconds=0.5,
        dns_attempts=2,
        mail_hostname="mail.node.test",
        node_mx_hostnames="east=mx-east.node.test, west=mx-west.node.test",
    )


@pytest.fixture
def seeded(runtime: Runtime, tenant: Tenant) -> SeededDomain:
    add_ips(runtime, tenant.workspace_id, IP)
    return add_domain(runtime, tenant.workspace_id, "acme.test", (IP,))


def verify(runtime: Runtime, seeded: SeededDomain) -> Domain:
    return verify_domain(
        runtime.db,
        domain_id=seeded.id,
        settings=runtime.settings,
        resolver=build_resolver(runtime.settings),
    )


def test_correct_records_verify(runtime: Runtime, dns: DnsTestServer, seeded: SeededDomain) -> None:
    publish_correct_records(dns, seeded)
    before = utcnow()
    domain = verify(runtime, seeded)
    assert (domain.mx_ok, domain.spf_ok, domain.dkim_ok, domain.dmarc_ok) == (True,) * 4
    assert domain.status == "verified"
    assert domain.last_verified_at is not None and domain.last_verified_at >= before
    results = domain.dns_results or {}
    for check in ("mx", "spf", "dkim", "dmarc"):
        assert results[check]["status"] == "ok"
        assert results[check]["error"] is None
    assert results["spf"]["found"] == [f"v=spf1 ip4:{IP} ~all"]
    assert results["dkim"]["found"] == [seeded.dkim_record]


def test_truncated_answers_are_fetched_over_tcp(runtime: Runtime, dns: DnsTestServer) -> None:
    dns.add("big.acme.test", "TXT", "v=spf1 " + " ".join(f"ip4:192.0.2.{i}" for i in range(200)))
    (record,) = build_resolver(runtime.settings).txt("big.acme.test")
    assert record.endswith("ip4:192.0.2.199")
    assert [t for n, _, t in dns.queries if n == "big.acme.test"] == ["udp", "tcp"]


def test_an_mx_naming_the_node_host_passes(
    runtime: Runtime, dns: DnsTestServer, seeded: SeededDomain
) -> None:
    publish_correct_records(dns, seeded)
    dns.replace("acme.test", "MX", "10 mail.node.test")
    assert verify(runtime, seeded).mx_ok


def test_each_node_has_its_own_mx_host(
    runtime: Runtime, dns: DnsTestServer, make_tenant: Callable[..., Tenant]
) -> None:
    east, plain = make_tenant(), make_tenant()
    add_ips(runtime, east.workspace_id, IP, node="east")
    add_ips(runtime, plain.workspace_id, "203.0.113.8")  # node main: no MX host of its own
    on_east = add_domain(runtime, east.workspace_id, "east.test", (IP,))
    on_main = add_domain(runtime, plain.workspace_id, "plain.test", ("203.0.113.8",))
    for seeded, mx in ((on_east, "10 mx-east.node.test"), (on_main, "10 mx-west.node.test")):
        publish_correct_records(dns, seeded)
        dns.replace(seeded.name, "MX", mx)
    assert verify(runtime, on_east).mx_ok  # its node's MX host
    refused = verify(runtime, on_main)  # another node's host is not this workspace's
    assert not refused.mx_ok
    assert "mx-west.node.test" in (refused.dns_results or {})["mx"]["error"]
    with runtime.db.transaction() as session:
        domain = session.get(Domain, on_east.id)
        assert domain is not None
        records = dns_records_out(session, domain, settings=runtime.settings)
    mx = [(r["type"], r["value"]) for r in records if r["name"] == "east.test"]
    assert mx[0] == ("MX", "10 mx-east.node.test")
    assert not [r for r in records if r["type"] == "A"]  # the node's host has its own A


BREAKAGES: list[tuple[str, str, Callable[[DnsTestServer], None], str]] = [
    ("missing MX", "mx", lambda d: d.remove("acme.test", "MX"), "no MX record at acme.test"),
    (
        "MX to a foreign host",
        "mx",
        lambda d: (
            d.replace("acme.test", "MX", "10 aspmx.mail.example"),
            d.add("aspmx.mail.example", "A", "192.0.2.25"),
        ),
        "MX host aspmx.mail.example (preference 10) is not this workspace's: "
        "it resolves to 192.0.2.25",
    ),
    (
        "missing SPF",
        "spf",
        lambda d: d.remove("acme.test", "TXT"),
        "no SPF record (TXT v=spf1) at acme.test",
    ),
    (
        "duplicate SPF",
        "spf",
        lambda d: d.add("acme.test", "TXT", "v=spf1 include:_spf.mail.example ~all"),
        "2 SPF records at acme.test; exactly one is allowed",
    ),
    (
        "SPF not covering the IP",
        "spf",
        lambda d: d.replace("acme.test", "TXT", "v=spf1 ip4:198.51.100.0/24 -all"),
        f"SPF does not authorize {IP} (fail)",
    ),
    (
        "SPF over the lookup limit",
        "spf",
        lambda d: (
            d.replace(
                "acme.test",
                "TXT",
                "v=spf1 " + " ".join(f"include:s{i}.spf.test" for i in range(11)) + " -all",
            ),
            [d.add(f"s{i}.spf.test", "TXT", f"v=spf1 ip4:{IP} -all") for i in range(11)],
        ),
        "more than 10 DNS lookups",
    ),
    (
        "missing DKIM",
        "dkim",
        lambda d: d.remove(f"{SELECTOR}._domainkey.acme.test", "TXT"),
        f"no DKIM record (TXT) at {SELECTOR}._domainkey.acme.test",
    ),
    (
        "DKIM key mismatch",
        "dkim",
        lambda d: d.replace(
            f"{SELECTOR}._domainkey.acme.test", "TXT", "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQE="
        ),
        "does not match the platform's key for this domain",
    ),
    (
        "missing DMARC",
        "dmarc",
        lambda d: d.remove("_dmarc.acme.test", "TXT"),
        "no DMARC record (TXT v=DMARC1) at _dmarc.acme.test",
    ),
    (
        "DMARC without p=",
        "dmarc",
        lambda d: d.replace("_dmarc.acme.test", "TXT", "v=DMARC1; rua=mailto:dmarc@acme.test"),
        "DMARC record has no p= tag",
    ),
]


@pytest.mark.parametrize(
    ("check", "breakage", "reason"),
    [pytest.param(c, b, r, id=name) for name, c, b, r in BREAKAGES],
)
def test_each_wrong_record_fails_with_a_precise_reason(
    runtime: Runtime,
    dns: DnsTestServer,
    seeded: SeededDomain,
    check: str,
    breakage: Callable[[DnsTestServer], None],
    reason: str,
) -> None:
    publish_correct_records(dns, seeded)
    breakage(dns)
    domain = verify(runtime, seeded)
    results = domain.dns_results or {}
    flags = {"mx": domain.mx_ok, "spf": domain.spf_ok, "dkim": domain.dkim_ok}
    flags["dmarc"] = domain.dmarc_ok
    assert flags == {c: c != check for c in flags}
    assert results[check]["status"] == "fail"
    assert reason in results[check]["error"]
    assert domain.status == "unverified"


def test_status_falls_back_when_a_record_later_breaks(
    runtime: Runtime, dns: DnsTestServer, seeded: SeededDomain
) -> None:
    publish_correct_records(dns, seeded)
    first = verify(runtime, seeded)
    assert first.status == "verified"
    dns.replace("_dmarc.acme.test", "TXT", "v=DMARC1")
    second = verify(runtime, seeded)
    assert second.status == "unverified"
    assert not second.dmarc_ok
    assert second.last_verified_at is not None and first.last_verified_at is not None
    assert second.last_verified_at > first.last_verified_at


def test_a_timeout_is_not_a_failure_and_keeps_the_flag(
    runtime: Runtime, dns: DnsTestServer, seeded: SeededDomain
) -> None:
    publish_correct_records(dns, seeded)
    assert verify(runtime, seeded).status == "verified"
    dns.silent.add("_dmarc.acme.test")
    domain = verify(runtime, seeded)
    results = domain.dns_results or {}
    assert results["dmarc"]["status"] == "timeout"
    assert results["dmarc"]["found"] == ["v=DMARC1; p=quarantine; adkim=r; aspf=r"]
    assert "will retry" in results["dmarc"]["error"]
    assert domain.dmarc_ok is True
    assert domain.status == "verified"
    assert results["spf"]["status"] == "ok"
    # tried twice (ADBTD_DNS_ATTEMPTS=2) before giving up
    assert [q for q in dns.queries if q[0] == "_dmarc.acme.test"][-2:] == [
        ("_dmarc.acme.test", "TXT", "udp"),
        ("_dmarc.acme.test", "TXT", "udp"),
    ]
    began = results["dmarc"]["temporarySince"]
    again = (verify(runtime, seeded).dns_results or {})["dmarc"]
    assert again["temporarySince"] == began  # the outage is counted from its first timeout


def test_a_record_silent_for_longer_than_the_grace_counts_as_failing(
    runtime: Runtime, dns: DnsTestServer, seeded: SeededDomain
) -> None:
    publish_correct_records(dns, seeded)
    assert verify(runtime, seeded).status == "verified"
    dns.silent.add("_dmarc.acme.test")
    assert verify(runtime, seeded).status == "verified"
    long_ago = iso_ms(utcnow() - timedelta(seconds=runtime.settings.dns_outage_grace_seconds + 60))
    with runtime.db.transaction() as session:
        domain = session.get(Domain, seeded.id)
        assert domain is not None and domain.dns_results is not None
        results = dict(domain.dns_results)
        results["dmarc"] = {**results["dmarc"], "temporarySince": long_ago}
        domain.dns_results = results
    domain = verify(runtime, seeded)
    dmarc = (domain.dns_results or {})["dmarc"]
    assert dmarc["status"] == "timeout" and dmarc["ok"] is False
    assert f"no DNS answer for this record since {long_ago}" in dmarc["error"]
    assert domain.dmarc_ok is False and domain.status == "unverified"
    dns.silent.discard("_dmarc.acme.test")
    assert verify(runtime, seeded).status == "verified"  # back as soon as DNS answers


def test_a_resolver_that_never_answers_times_out_every_check(
    runtime: Runtime,
    settings_factory: Callable[..., Settings],
    seeded: SeededDomain,
) -> None:
    with silent_udp_port() as address:
        silent = settings_factory(dns_resolvers=address, dns_timeout_seconds=0.3, dns_attempts=1)
        domain = verify_domain(
            runtime.db, domain_id=seeded.id, settings=silent, resolver=build_resolver(silent)
        )
    results = domain.dns_results or {}
    assert {results[c]["status"] for c in ("mx", "spf", "dkim", "dmarc")} == {"timeout"}
    assert (domain.mx_ok, domain.spf_ok, domain.dkim_ok, domain.dmarc_ok) == (False,) * 4
    assert domain.last_verified_at is not None
    assert domain.status == "unverified"


def test_timed_out_domains_are_due_for_a_retry_sooner(
    runtime: Runtime, dns: DnsTestServer, seeded: SeededDomain
) -> None:
    publish_correct_records(dns, seeded)
    with runtime.db.transaction() as session:
        assert domains_due(session, now=utcnow(), interval_seconds=3600, retry_seconds=60) == [
            seeded.id
        ]
    verify(runtime, seeded)
    later = utcnow() + timedelta(seconds=120)
    with runtime.db.transaction() as session:
        assert domains_due(session, now=later, interval_seconds=3600, retry_seconds=60) == []
    dns.silent.add("acme.test")
    verify(runtime, seeded)
    with runtime.db.transaction() as session:
        assert domains_due(session, now=later, interval_seconds=3600, retry_seconds=60) == [
            seeded.id
        ]
        assert domains_due(session, now=utcnow(), interval_seconds=3600, retry_seconds=60) == []


def test_spf_must_cover_every_ip_of_the_workspace(
    runtime: Runtime, dns: DnsTestServer, seeded: SeededDomain, tenant: Tenant
) -> None:
    publish_correct_records(dns, seeded)
    add_ips(runtime, tenant.workspace_id, "203.0.113.8")
    domain = verify(runtime, seeded)
    assert not domain.spf_ok
    assert "203.0.113.8 (softfail)" in (domain.dns_results or {})["spf"]["error"]
    assert domain.mx_ok
