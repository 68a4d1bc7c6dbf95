"""Pure DNS record rules: parsers, SPF evaluation over a dictionary of records, required records."""

from __future__ import annotations

import pytest

from adbtd.services.dns_records import (
    RecordError,
    check_dkim,
    check_dmarc,
    check_mx,
    parse_dkim,
    parse_dmarc,
    required_records,
    spf_value,
    txt_strings,
)
from adbtd.services.spf import SpfError, evaluate_spf, parse_spf

KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu5Zp"
OTHER_KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzzzz"


class FakeDns:
    """A dictionary of records standing in for DNS in pure tests."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.queries: list[tuple[str, str]] = []

    def _get(self, name: str, rtype: str) -> list[str]:
        self.queries.append((name, rtype))
        return self.records.get((name, rtype), [])

    def txt(self, name: str) -> list[str]:
        return self._get(name, "TXT")

    def mx(self, name: str) -> list[tuple[int, str]]:
        return [
            (int(pref), host) for pref, host in (v.split(" ", 1) for v in self._get(name, "MX"))
        ]

    def addresses(self, name: str) -> list[str]:
        return self._get(name, "A") + self._get(name, "AAAA")


@pytest.mark.parametrize(
    ("record", "kinds"),
    [
        ("v=spf1 -all", ["all"]),
        ("v=spf1 ip4:203.0.113.7 ~all", ["ip4", "all"]),
        ("V=SPF1 IP4:203.0.113.0/24 ?ALL", ["ip4", "all"]),
        ("v=spf1 ip6:2001:db8::/32 -all", ["ip6", "all"]),
        (
            "v=spf1 a mx a:mail.example.com/24 mx:example.org/24//64 -all",
            ["a", "mx", "a", "mx", "all"],
        ),
        (
            "v=spf1 include:_spf.example.com exists:%{i}._spf.example.com -all",
            ["include", "exists", "all"],
        ),
        ("v=spf1  ip4:192.0.2.1   redirect=_spf.example.com", ["ip4"]),
        ("v=spf1 ptr:example.com foo=bar -all", ["ptr", "all"]),
        ("v=spf1", []),
    ],
)
def test_parse_spf_accepts_valid_records(record: str, kinds: list[str]) -> None:
    assert [m.kind for m in parse_spf(record).mechanisms] == kinds


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("v=spf2 -all", "must start with v=spf1"),
        ("spf1 -all", "must start with v=spf1"),
        ("v=spf1 ip4:300.1.1.1 -all", "not an IP address"),
        ("v=spf1 ip4:2001:db8::1 -all", "wrong address family"),
        ("v=spf1 ip4 -all", "needs an address"),
        ("v=spf1 include -all", "needs a domain"),
        ("v=spf1 include: -all", "empty domain"),
        ("v=spf1 a/33 -all", "out of range"),
        ("v=spf1 a/x -all", "bad CIDR"),
        ("v=spf1 foo:bar -all", "unknown SPF mechanism"),
        ("v=spf1 all:x", "takes no argument"),
        ("v=spf1 include:not_a_domain -all", "not a domain name"),
        ("v=spf1 include:%{z}.example.com -all", "bad macro"),
        ("v=spf1 redirect=a.example.com redirect=b.example.com", "more than once"),
    ],
)
def test_parse_spf_rejects_bad_records(record: str, reason: str) -> None:
    with pytest.raises(SpfError, match=reason):
        parse_spf(record)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("v=DMARC1; p=none", None),
        ("v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=r;", None),
        ("v=DMARC1;p=quarantine;rua=mailto:d@example.com", None),
        ("v=DMARC1", "no p= tag"),
        ("v=DMARC1; rua=mailto:d@example.com", "no p= tag"),
        ("p=none; v=DMARC1", "must start with v=DMARC1"),
        ("v=DMARC2; p=none", "must start with v=DMARC1"),
        ("v=DMARC1; p=block", "not none, quarantine or reject"),
        ("v=DMARC1; p=none; sp=maybe", "sp=maybe"),
        ("v=DMARC1; p=none; pct=101", "pct=101"),
        ("v=DMARC1; p=none; adkim=x", "adkim=x"),
        ("v=DMARC1; p=none; p=reject", "more than once"),
        ("v=DMARC1; p", "malformed DMARC tag"),
    ],
)
def test_parse_dmarc(record: str, reason: str | None) -> None:
    if reason is None:
        assert parse_dmarc(record).policy in ("none", "quarantine", "reject")
    else:
        with pytest.raises(RecordError, match=reason):
            parse_dmarc(record)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (f"v=DKIM1; k=rsa; p={KEY}", None),
        (f"k=rsa; p={KEY}", None),
        (f"v=DKIM1; p={KEY[:20]} {KEY[20:]}", None),
        (f"p={KEY}; v=DKIM1", "must come first"),
        ("v=DKIM1; k=rsa", "no p= tag"),
        ("v=DKIM1; k=rsa; p=", "revoked"),
        ("v=DKIM1; p=not*base64", "not valid base64"),
        (f"v=DKIM1; k=dsa; p={KEY}", "not rsa or ed25519"),
        (f"v=DKIM1; p={KEY}; p={KEY}", "more than once"),
    ],
)
def test_parse_dkim(record: str, reason: str | None) -> None:
    if reason is None:
        assert parse_dkim(record).public_key == KEY
    else:
        with pytest.raises(RecordError, match=reason):
            parse_dkim(record)


def test_spf_passes_direct_ip_and_cidr() -> None:
    dns = FakeDns({("example.com", "TXT"): ["v=spf1 ip4:203.0.113.0/24 ip4:198.51.100.9 -all"]})
    verdict = evaluate_spf("example.com", ["203.0.113.7", "198.51.100.9"], dns)
    assert verdict.ok, verdict.error
    assert verdict.lookups == 0


def test_spf_follows_include_a_mx_and_redirect() -> None:
    dns = FakeDns(
        {
            ("example.com", "TXT"): ["v=spf1 include:_spf.example.net a mx redirect=r.example.org"],
            ("_spf.example.net", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"],
            ("example.com", "A"): ["192.0.2.2"],
            ("example.com", "MX"): ["10 mx.example.com"],
            ("mx.example.com", "A"): ["192.0.2.3"],
            ("r.example.org", "TXT"): ["v=spf1 a:host.example.org/30 -all"],
            ("host.example.org", "A"): ["192.0.2.8"],
        }
    )
    ips = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.10"]
    verdict = evaluate_spf("example.com", ips, dns)
    assert verdict.ok, verdict.error
    assert verdict.lookups == 5


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ({}, "no SPF record"),
        ({("example.com", "TXT"): ["v=spf1 -all", "v=spf1 ip4:203.0.113.7 -all"]}, "2 SPF records"),
        ({("example.com", "TXT"): ["v=spf1 ip4:203.0.113.8 -all"]}, "203.0.113.7 (fail)"),
        ({("example.com", "TXT"): ["v=spf1 ip4:203.0.113.8 ~all"]}, "203.0.113.7 (softfail)"),
        ({("example.com", "TXT"): ["v=spf1 ip4:203.0.113.8"]}, "203.0.113.7 (neutral)"),
        ({("example.com", "TXT"): ["v=spf1 -ip4:203.0.113.7 +all"]}, "203.0.113.7 (fail)"),
        ({("example.com", "TXT"): ["v=spf1 bogus -all"]}, "unknown SPF mechanism"),
        ({("example.com", "TXT"): ["v=spf1 include:gone.example.net -all"]}, "has no SPF record"),
        (
            {("example.com", "TXT"): ["v=spf1 a:v1.example.net a:v2.example.net a:v3.example.net"]},
            "more than 2 lookups that find nothing",
        ),
        (
            {
                ("example.com", "TXT"): ["v=spf1 include:x.example.net -all"],
                ("x.example.net", "TXT"): ["v=spf1 ip4:1.2.3.4 -all", "v=spf1 -all"],
            },
            "has 2 SPF records",
        ),
    ],
)
def test_spf_failures_say_why(records: dict[tuple[str, str], list[str]], reason: str) -> None:
    verdict = evaluate_spf("example.com", ["203.0.113.7"], FakeDns(records))
    assert not verdict.ok
    assert verdict.error is not None
    assert reason in verdict.error


def test_spf_over_ten_lookups_fails_even_when_the_ip_is_listed_early() -> None:
    includes = " ".join(f"include:s{i}.example.net" for i in range(11))
    records = {("example.com", "TXT"): [f"v=spf1 ip4:203.0.113.7 {includes} -all"]}
    for i in range(11):
        records[(f"s{i}.example.net", "TXT")] = [f"v=spf1 ip4:192.0.2.{i} -all"]
    verdict = evaluate_spf("example.com", ["203.0.113.7"], FakeDns(records))
    assert not verdict.ok
    assert verdict.error is not None
    assert "more than 10 DNS lookups" in verdict.error
    assert "include:s10.example.net" in verdict.error


def test_spf_ten_lookups_is_still_fine() -> None:
    includes = " ".join(f"include:s{i}.example.net" for i in range(10))
    records = {("example.com", "TXT"): [f"v=spf1 {includes} -all"]}
    for i in range(10):
        records[(f"s{i}.example.net", "TXT")] = [f"v=spf1 ip4:192.0.2.{i} -all"]
    verdict = evaluate_spf("example.com", ["192.0.2.9"], FakeDns(records))
    assert verdict.ok, verdict.error
    assert verdict.lookups == 10


def test_spf_include_loop_stops_at_the_limit() -> None:
    records = {("example.com", "TXT"): ["v=spf1 include:example.com -all"]}
    verdict = evaluate_spf("example.com", ["192.0.2.1"], FakeDns(records))
    assert not verdict.ok
    assert verdict.error is not None
    assert "more than 10 DNS lookups" in verdict.error


def test_spf_macro_targets_are_not_looked_up_but_the_rest_is_checked() -> None:
    listed = FakeDns(
        {
            ("example.com", "TXT"): [
                "v=spf1 include:%{i}._ip.%{h}._ehlo.%{d}._spf.vali.email ip4:203.0.113.7 -all"
            ]
        }
    )
    verdict = evaluate_spf("example.com", ["203.0.113.7"], listed)
    assert verdict.ok, verdict.error
    assert verdict.lookups == 1  # the include still counts against the limit
    only_macros = FakeDns({("example.com", "TXT"): ["v=spf1 redirect=%{d}._spf.example.net"]})
    verdict = evaluate_spf("example.com", ["203.0.113.7"], only_macros)
    assert not verdict.ok and verdict.error is not None
    assert "203.0.113.7 (neutral)" in verdict.error
    assert "macros are not evaluated: redirect=%{d}._spf.example.net" in verdict.error


def test_spf_terms_after_all_and_redirect_with_all_are_not_followed() -> None:
    dns = FakeDns(
        {("example.com", "TXT"): ["v=spf1 ip4:192.0.2.1 -all include:x.example.net redirect=y.n"]}
    )
    verdict = evaluate_spf("example.com", ["192.0.2.1"], dns)
    assert verdict.ok, verdict.error
    assert verdict.lookups == 0


@pytest.mark.parametrize(
    ("records", "ok", "reason"),
    [
        (
            {
                ("example.com", "MX"): ["10 mail.example.com"],
                ("mail.example.com", "A"): ["203.0.113.7"],
            },
            True,
            None,
        ),
        ({("example.com", "MX"): ["10 mx.node.test"]}, True, None),
        ({}, False, "no MX record at example.com"),
        ({("example.com", "MX"): ["0 ."]}, False, "null MX"),
        (
            {
                ("example.com", "MX"): ["10 aspmx.example.net"],
                ("aspmx.example.net", "A"): ["192.0.2.50"],
            },
            False,
            "MX host aspmx.example.net (preference 10) is not this workspace's: "
            "it resolves to 192.0.2.50",
        ),
        (
            {
                ("example.com", "MX"): ["10 mail.example.com", "20 backup.example.net"],
                ("mail.example.com", "A"): ["203.0.113.7"],
            },
            False,
            "backup.example.net (preference 20) is not this workspace's: it resolves to nothing",
        ),
    ],
)
def test_check_mx(records: dict[tuple[str, str], list[str]], ok: bool, reason: str | None) -> None:
    outcome = check_mx("example.com", ["203.0.113.7"], ["mx.node.test"], FakeDns(records))
    assert outcome.ok is ok
    assert outcome.error == reason or (reason is not None and reason in (outcome.error or ""))


def test_check_dkim_and_dmarc_reasons() -> None:
    name = "s._domainkey.example.com"
    expected = f"v=DKIM1; k=rsa; p={KEY}"
    assert check_dkim(name, [expected], expected).ok
    assert "no DKIM record (TXT) at" in (check_dkim(name, [], expected).error or "")
    mismatch = check_dkim(name, [f"v=DKIM1; p={OTHER_KEY}"], expected)
    assert not mismatch.ok
    assert "does not match the platform's key" in (mismatch.error or "")
    assert "2 TXT records" in (check_dkim(name, [expected, expected], expected).error or "")
    assert check_dmarc("_dmarc.example.com", ["v=DMARC1; p=none", "unrelated"]).ok
    assert "no p= tag" in (check_dmarc("_dmarc.example.com", ["v=DMARC1"]).error or "")
    assert "no DMARC record" in (check_dmarc("_dmarc.example.com", ["x"]).error or "")
    duplicate = check_dmarc("_dmarc.example.com", ["v=DMARC1; p=none", "v=DMARC1; p=reject"])
    assert "2 DMARC records" in (duplicate.error or "")


def test_required_records_cover_all_four_checks() -> None:
    records = required_records(
        domain="Example.com",
        ips=["203.0.113.9", "203.0.113.7"],
        dkim_selector="s1",
        dkim_record=f"v=DKIM1; k=rsa; p={KEY}",
    )
    rows = [(r.check, r.type, r.name, r.value) for r in records]
    assert rows == [
        ("mx", "MX", "example.com", "10 mail.example.com"),
        ("mx", "A", "mail.example.com", "203.0.113.7"),
        ("mx", "A", "mail.example.com", "203.0.113.9"),
        ("spf", "TXT", "example.com", "v=spf1 ip4:203.0.113.7 ip4:203.0.113.9 ~all"),
        ("dkim", "TXT", "s1._domainkey.example.com", f"v=DKIM1; k=rsa; p={KEY}"),
        ("dmarc", "TXT", "_dmarc.example.com", "v=DMARC1; p=quarantine; adkim=r; aspf=r"),
    ]
    with_host = required_records(
        domain="example.com",
        ips=["203.0.113.7"],
        dkim_selector="s1",
        dkim_record=None,
        mx_hostname="mx.node.test.",
    )
    assert [(r.type, r.value) for r in with_host][:2] == [
        ("MX", "10 mx.node.test"),
        ("TXT", "v=spf1 ip4:203.0.113.7 ~all"),
    ]


def test_required_records_verify_against_themselves() -> None:
    ips = ["203.0.113.7"]
    records = required_records(
        domain="example.com", ips=ips, dkim_selector="s1", dkim_record=f"v=DKIM1; p={KEY}"
    )
    table: dict[tuple[str, str], list[str]] = {}
    for r in records:
        table.setdefault((r.name, r.type), []).append(r.value)
    dns = FakeDns(table)
    assert evaluate_spf("example.com", ips, dns).ok
    assert check_mx("example.com", ips, [], dns).ok
    assert check_dkim(
        "s1._domainkey.example.com", dns.txt("s1._domainkey.example.com"), f"p={KEY}"
    ).ok
    assert check_dmarc("_dmarc.example.com", dns.txt("_dmarc.example.com")).ok


def test_txt_strings_split_at_255() -> None:
    assert txt_strings("a" * 600) == ["a" * 255, "a" * 255, "a" * 90]
    assert spf_value(["2001:db8::1", "192.0.2.1"]) == "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 ~all"
