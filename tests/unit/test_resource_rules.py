"""Pure rules behind the resource API: names, addresses, inventory items, IP spreading."""

from __future__ import annotations

from collections import Counter

import pytest

from adbtd.adapters.registrar import LocalRegistrar, RegistrationFailed, registrar_for
from adbtd.errors import ValidationFailed
from adbtd.services.inventory import expand_items
from adbtd.services.mailboxes import spread
from adbtd.services.names import normalize_domain_name, normalize_email, normalize_emails


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme.com", "acme.com"),
        ("ACME.Com", "acme.com"),
        ("acme.com.", "acme.com"),
        ("mail.eu.acme.co.uk", "mail.eu.acme.co.uk"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("a-b.xn--p1ai", "a-b.xn--p1ai"),
        ("1password.com", "1password.com"),
        ("acme.test", "acme.test"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
        (".".join(["a" * 61] * 4) + ".com", ".".join(["a" * 61] * 4) + ".com"),
    ],
)
def test_valid_domain_names_normalize(raw: str, expected: str) -> None:
    assert normalize_domain_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "com",
        "acme..com",
        ".acme.com",
        "acme.com..",
        "-acme.com",
        "acme-.com",
        "ac_me.com",
        "acme.c0m1",
        "acme.123",
        "acme.c",
        "a" * 64 + ".com",
        ".".join(["a" * 62] * 4) + ".com",
        " acme.com",
        "acme.com ",
        "acme.com\n",
        "acme\x00.com",
        "bücher.de",
        "acme.local",
        "printer.localhost",
        "x.onion",
        "1.0.0.127.in-addr.arpa",
        "x.invalid",
        "acme.com/path",
        "user@acme.com",
    ],
)
def test_invalid_domain_names_are_refused(raw: str) -> None:
    with pytest.raises(ValidationFailed):
        normalize_domain_name(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@acme.com", "alice@acme.com"),
        ("Alice@ACME.com", "alice@acme.com"),
        ("first.last+tag@acme.com", "first.last+tag@acme.com"),
        ("o'brien@acme.com", "o'brien@acme.com"),
        ("x@mail.acme.com.", "x@mail.acme.com"),
        ("a" * 64 + "@acme.com", "a" * 64 + "@acme.com"),
    ],
)
def test_valid_emails_normalize(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "alice",
        "@acme.com",
        "alice@",
        "alice@acme",
        "a..b@acme.com",
        ".a@acme.com",
        "a.@acme.com",
        "a b@acme.com",
        '"a b"@acme.com',
        "ü@acme.com",
        "a@bücher.de",
        "a" * 65 + "@acme.com",
        "a@[127.0.0.1]",
        "a@127.0.0.1",
        "Alice <alice@acme.com>",
        "alice@acme.com\r\nBcc: x@evil.com",
        "alice@acme.com\n",
        "alice\x00@acme.com",
        "a@localhost",
    ],
)
def test_invalid_emails_are_refused(raw: str) -> None:
    with pytest.raises(ValidationFailed):
        normalize_email(raw)


def test_duplicates_after_normalization_are_refused() -> None:
    assert normalize_emails(["a@x.com", "b@x.com"]) == ["a@x.com", "b@x.com"]
    with pytest.raises(ValidationFailed, match="more than once"):
        normalize_emails(["a@x.com", "A@X.COM."])


def test_error_messages_bound_the_echoed_input() -> None:
    with pytest.raises(ValidationFailed) as caught:
        normalize_email("x" * 5000)
    assert len(caught.value.message) < 200


def test_inventory_items_expand_in_order_without_repeats() -> None:
    assert expand_items(["127.0.1.3-127.0.1.4", "127.0.1.9", "127.0.1.4"]) == [
        "127.0.1.3",
        "127.0.1.4",
        "127.0.1.9",
    ]
    assert expand_items(["10.0.0.0/30, 10.0.0.9"]) == ["10.0.0.1", "10.0.0.2", "10.0.0.9"]
    for bad in ("300.0.0.1", "10.0.0.5-10.0.0.1", "nope", "10.0.0.0/8"):
        with pytest.raises(ValidationFailed):
            expand_items([bad])


def test_spread_fills_the_least_loaded_ip_first() -> None:
    loads = Counter({"ip_a": 3, "ip_b": 0, "ip_c": 1})
    picks = spread(loads, 5)
    assert Counter(picks) == Counter({"ip_b": 3, "ip_c": 2})
    assert spread(Counter(), 3) == []


def test_local_registrar() -> None:
    registrar = LocalRegistrar(refuse=frozenset({"taken.com"}))
    assert registrar.register("mine.com").name == "mine.com"
    assert registrar.register("mine.com").registrar_ref == "local:mine.com"
    with pytest.raises(RegistrationFailed):
        registrar.register("taken.com")
    assert isinstance(registrar_for("local"), LocalRegistrar)
    with pytest.raises(ValueError, match="unknown registrar"):
        registrar_for("godaddy")


@pytest.mark.parametrize(
    "address",
    [
        "a/b@acme.test",
        "a/../../x@acme.test",
        "bob=tag@acme.test",
        "-x.@acme.test",
        "x~y@acme.test",
        "a'b@acme.test",
    ],
)
def test_hosted_mailbox_names_are_path_and_map_safe(address: str) -> None:
    with pytest.raises(ValidationFailed, match=r"mailbox name|not an email|@"):
        normalize_emails([address])


def test_hosted_mailbox_names_keep_ordinary_addresses() -> None:
    assert normalize_emails(["Alice.Smith@Acme.Test", "ops_team-1@acme.test"]) == [
        "alice.smith@acme.test",
        "ops_team-1@acme.test",
    ]
