"""Building outgoing messages: structure, encodings, envelope, and every validation rule."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adbtd.errors import ValidationFailed
from adbtd.services.compose import (
    MAX_BODY_BYTES,
    build_message,
    encoded_words,
    prepare_message,
)
from adbtd.services.mime_reader import read_message

NOW = datetime(2026, 5, 3, 8, 14, 22, tzinfo=UTC)
SENDER = "alice@acme.com"


def build(**overrides: Any) -> Any:
    request: dict[str, Any] = {"to": "you@example.com", "subject": "hello", "text": "plain body"}
    request.update(overrides)
    return build_message(sender=SENDER, now=NOW, **request)


def headers_of(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line[:1] not in (" ", "\t")]


def test_text_only_message_has_exactly_the_expected_headers() -> None:
    built = build()
    assert headers_of(built.data) == [
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
    ]
    parsed = message_from_bytes(built.data, policy=policy.default)
    assert parsed["From"] == SENDER
    assert parsed["Date"] == "Sun, 03 May 2026 08:14:22 +0000"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content() == "plain body\r\n"
    assert built.recipients == ("you@example.com",)
    assert built.sender == SENDER


def test_both_bodies_make_multipart_alternative_text_first() -> None:
    built = build(html="<p>html body</p>")
    parsed = message_from_bytes(built.data, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[1].get_content() == "<p>html body</p>\r\n"


def test_html_only() -> None:
    parsed = message_from_bytes(build(text=None, html="<b>x</b>").data, policy=policy.default)
    assert parsed.get_content_type() == "text/html"


def test_message_id_is_random_on_the_sender_domain() -> None:
    first, second = build(), build()
    assert first.message_id.startswith("<") and first.message_id.endswith("@acme.com>")
    assert first.message_id != second.message_id
    assert f"Message-ID: {first.message_id}\r\n".encode() in first.data


def test_bcc_only_in_envelope_and_duplicates_once() -> None:
    built = build(
        to=["a@x.com", "Bee <b@x.com>"],
        cc=["c@x.com", "A@x.com"],
        bcc=["secret@audit.com"],
    )
    assert built.recipients == ("a@x.com", "b@x.com", "c@x.com", "secret@audit.com")
    assert b"secret@audit.com" not in built.data
    assert b"Bcc" not in built.data
    parsed = message_from_bytes(built.data, policy=policy.default)
    assert parsed["To"] == "a@x.com, Bee <b@x.com>"
    assert parsed["Cc"] == "c@x.com, A@x.com"


def test_from_name_reply_to_and_unicode_everywhere() -> None:
    built = build(
        from_name="Zoë, “the” Ünïcode 🚀",
        subject="Grüße — ☃ " * 12,
        text="naïve café\nzweite Zeile",
        html="<p>naïve 🚀</p>",
        reply_to="Støtte <support@acme.com>",
    )
    assert built.data.isascii()
    parsed = read_message(built.data)
    assert parsed.headers.subject == "Grüße — ☃ " * 12
    assert parsed.headers.from_ == ['"Zoë, “the” Ünïcode 🚀" <alice@acme.com>']
    assert parsed.text == "naïve café\nzweite Zeile\n"
    assert parsed.html == "<p>naïve 🚀</p>\n"
    lines = built.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in lines) <= 998


def test_idn_domains_are_sent_as_punycode() -> None:
    built = build(to="jorg@bücher.de")
    assert built.recipients == ("jorg@xn--bcher-kva.de",)
    assert b"To: jorg@xn--bcher-kva.de\r\n" in built.data


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "a\rb"),
        ("subject", "a\nb"),
        ("subject", "a\x00b"),
        ("from_name", "Evil\r\nBcc: x@y.com"),
        ("reply_to", "x@y.com\r\nBcc: z@y.com"),
        ("to", "x@y.com\nBcc: z@y.com"),
        ("to", ["ok@y.com", "bad\x00@y.com"]),
        ("cc", ["x@y.com\r"]),
        ("bcc", ["not an address"]),
        ("to", "no-at-sign"),
        ("to", "jörg@example.com"),
        ("to", []),
        ("to", ["x@y.com"] * 51),
        ("subject", "\ud800 lone surrogate"),
        ("text", "\udfff"),
        ("reply_to", "@nope"),
    ],
)
def test_bad_input_is_a_validation_error(field: str, value: Any) -> None:
    with pytest.raises(ValidationFailed):
        build(**{field: value})


def test_recipient_limit_counts_to_cc_and_bcc() -> None:
    many = [f"r{i}@x.com" for i in range(20)]
    assert len(build(to=many, cc=many[:20], bcc=many[:10]).recipients) == 20
    with pytest.raises(ValidationFailed, match="at most 50"):
        build(
            to=many, cc=[f"c{i}@x.com" for i in range(20)], bcc=[f"b{i}@x.com" for i in range(11)]
        )


def test_a_body_is_required_and_bounded() -> None:
    with pytest.raises(ValidationFailed, match="text or html"):
        build(text=None)
    with pytest.raises(ValidationFailed, match="text or html"):
        build(text="", html="")
    with pytest.raises(ValidationFailed, match="at most"):
        build(text="x" * (MAX_BODY_BYTES // 2), html="y" * (MAX_BODY_BYTES // 2 + 1))


def test_nul_in_body_is_quoted_printable() -> None:
    built = build(text="a\x00b")
    assert b"Content-Transfer-Encoding: quoted-printable" in built.data
    assert read_message(built.data).text == "a\x00b\n"


def test_prepare_validates_without_a_sender() -> None:
    draft = prepare_message(to="x@y.com", subject="s", text="t")
    assert draft.render(sender="bob@b.org", now=NOW).sender == "bob@b.org"


def test_encoded_words_never_split_a_character_and_stay_short() -> None:
    words = encoded_words("🚀" * 40).split("\r\n ")
    assert all(len(w) <= 75 for w in words)
    assert len(words) > 1


header_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(subject=header_text, name=header_text)
def test_any_unicode_subject_and_name_round_trips(subject: str, name: str) -> None:
    built = build(subject=subject, from_name=name or None)
    assert built.data.isascii()
    head = read_message(built.data).headers
    assert head.subject == subject
    [sender] = head.from_
    if name:
        assert sender.endswith(f" <{SENDER}>")
    else:
        assert sender == SENDER


@settings(max_examples=100, deadline=None)
@given(body=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_any_unicode_body_round_trips_up_to_line_endings(body: str) -> None:
    built = build(text=body, html=body)
    parsed = read_message(built.data)
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    expected += "" if expected.endswith("\n") else "\n"
    assert parsed.text == expected
    assert parsed.html == expected


def test_long_recipient_lists_are_folded_between_addresses() -> None:
    to = [f"Person Number {i} <someone.with.a.long.address{i}@example{i}.com>" for i in range(25)]
    cc = [f"Zoë Ünïcode {i} <z{i}@example.org>" for i in range(25)]
    built = build_message(sender="a@x.com", now=NOW, to=to, cc=cc, subject="s", text="t")
    head = built.data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    parsed = message_from_bytes(built.data, policy=policy.default)
    assert [a.addr_spec for a in parsed["To"].addresses] == [
        f"someone.with.a.long.address{i}@example{i}.com" for i in range(25)
    ]
    assert [a.display_name for a in parsed["Cc"].addresses] == [
        f"Zoë Ünïcode {i}" for i in range(25)
    ]
