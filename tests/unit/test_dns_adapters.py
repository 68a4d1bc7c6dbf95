"""Pure parts of the DNS adapters: resolver lists, PowerDNS content, blocklist names, local host."""

from __future__ import annotations

import pytest

from adbtd.adapters.dns_hosting import HostedRecord, LocalDnsHosting, build_dns_hosting
from adbtd.adapters.dns_resolver import parse_resolvers
from adbtd.adapters.pdns import PowerDnsHosting, presentation
from adbtd.services.reputation import reverse_name
from adbtd.settings import Settings


@pytest.mark.parametrize(
    ("spec", "servers"),
    [
        ("", []),
        ("127.0.0.1", [("127.0.0.1", 53)]),
        ("127.0.0.1:5353, 10.0.0.1", [("127.0.0.1", 5353), ("10.0.0.1", 53)]),
        ("[::1]:5300,::1", [("::1", 5300), ("::1", 53)]),
        (" 192.0.2.1:53 ", [("192.0.2.1", 53)]),
    ],
)
def test_parse_resolvers(spec: str, servers: list[tuple[str, int]]) -> None:
    assert parse_resolvers(spec) == servers


@pytest.mark.parametrize("spec", ["dns.example.com", "127.0.0.1:0", "127.0.0.1:99999", "1.2.3"])
def test_parse_resolvers_rejects_bad_entries(spec: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_resolvers(spec)


@pytest.mark.parametrize(
    ("record", "content"),
    [
        (HostedRecord("a.test", "MX", "10 mail.a.test"), "10 mail.a.test."),
        (HostedRecord("a.test", "A", "192.0.2.1"), "192.0.2.1"),
        (HostedRecord("a.test", "TXT", 'say "hi" \\o/'), '"say \\"hi\\" \\\\o/"'),
        (HostedRecord("a.test", "TXT", "x" * 300), f'"{"x" * 255}" "{"x" * 45}"'),
        (HostedRecord("a.test", "CNAME", "b.test"), "b.test."),
    ],
)
def test_pdns_presentation(record: HostedRecord, content: str) -> None:
    assert presentation(record) == content


def test_reverse_names_for_blocklists() -> None:
    assert reverse_name("127.0.0.2", "zen.spamhaus.org.") == "2.0.0.127.zen.spamhaus.org"
    v6 = reverse_name("2001:db8::2", "bl.test")
    assert v6 == ".".join(reversed("20010db8" + "0" * 23 + "2")) + ".bl.test"


def test_local_hosting_records_and_forgets_zones() -> None:
    hosting = LocalDnsHosting()
    hosting.publish_zone("A.test.", [HostedRecord("a.test", "A", "192.0.2.1")])
    assert hosting.list_zones() == ["a.test"]
    hosting.delete_zone("a.test")
    hosting.delete_zone("a.test")
    assert hosting.list_zones() == []


def test_hosting_is_chosen_by_settings() -> None:
    assert isinstance(build_dns_hosting(Settings()), LocalDnsHosting)
    assert isinstance(build_dns_hosting(Settings(dns_hosting_provider="pdns")), PowerDnsHosting)
    own = Settings(pdns_local=True, secret_key="k" * 40)
    assert isinstance(build_dns_hosting(own), PowerDnsHosting)
    assert len(own.pdns_key) == 64
    assert Settings(pdns_local=True, pdns_api_key="given").pdns_key == "given"
    assert Settings(dnsbl_zones=" zen.spamhaus.org., b.test ").dnsbl_zone_list == [
        "zen.spamhaus.org",
        "b.test",
    ]
