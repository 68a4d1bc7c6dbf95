"""Reading fetched messages: ordinary structures, and hostile ones within the documented limits."""

from __future__ import annotations

import base64
import time
import tracemalloc
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adbtd.services.mime_reader import MimeLimits, read_message, read_summary

LIMITS = MimeLimits()


def ordinary() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Lena <lena@example.com>"
    msg["To"] = "alice@acme.com, Bob <bob@acme.com>"
    msg["Subject"] = "re: launch ☃"
    msg["Date"] = "Sun, 03 May 2026 10:14:22 +0200"
    msg["Message-ID"] = "<abc@example.com>"
    msg.set_content("saw the launch — congrats")
    msg.add_alternative("<p>saw the launch — congrats</p>", subtype="html")
    msg.add_attachment(
        b"%PDF" + b"\x00" * 1000, maintype="application", subtype="pdf", filename="deck.pdf"
    )
    msg.add_attachment(
        b"GIF89a",
        maintype="image",
        subtype="gif",
        filename="Grüße.gif",
        cid="<logo@acme>",
        disposition="inline",
    )
    return msg.as_bytes()


def test_ordinary_message() -> None:
    parsed = read_message(ordinary())
    head = parsed.headers
    assert head.subject == "re: launch ☃"
    assert head.from_ == ["Lena <lena@example.com>"]
    assert head.to == ["alice@acme.com", "Bob <bob@acme.com>"]
    assert head.cc == []
    assert head.message_id == "<abc@example.com>"
    assert head.date == datetime(2026, 5, 3, 8, 14, 22, tzinfo=UTC)
    assert parsed.text == "saw the launch — congrats\n"
    assert parsed.html == "<p>saw the launch — congrats</p>\n"
    assert [(a.filename, a.content_type, a.size, a.content_id) for a in parsed.attachments] == [
        ("deck.pdf", "application/pdf", 1004, None),
        ("Grüße.gif", "image/gif", 6, "<logo@acme>"),
    ]
    assert not parsed.truncated


def test_summary_of_a_header_block() -> None:
    head = read_summary(b"Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: a@b.c\r\n\r\n")
    assert head.subject == "café"
    assert head.from_ == ["a@b.c"]
    assert head.date is None
    assert read_summary(b"From: a@b.c\r\n\r\n").subject is None


def test_charsets_and_encodings() -> None:
    raw = (
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n"
    )
    assert read_message(raw).text == "café\n"
    unknown = b"Content-Type: text/plain; charset=x-klingon\r\n\r\ncaf\xc3\xa9"
    assert read_message(unknown).text == "café"
    not_text_codec = b"Content-Type: text/plain; charset=rot13\r\n\r\nabc"
    assert read_message(not_text_codec).text == "abc"


def test_broken_base64_and_missing_close_delimiter() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"aGVsbG8gd29ybGQ!!!*\r\n"  # junk and no padding
        b"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''na%C3%AFve.bin\r\n\r\nAAEC"
    )
    parsed = read_message(raw)
    assert parsed.text == "hello world"
    assert [(a.filename, a.size) for a in parsed.attachments] == [("naïve.bin", 3)]


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"", ""),
        (b"\r\n", ""),
        (b"\r\nbody only", "body only"),
        (b"\x00\xff" * 2, ""),  # all header block, no body
        (b"\r\n\x00\xff", "\x00\ufffd"),
        (b"Subject", ""),
        (b":::\r\n\r\nx", "x"),
    ],
)
def test_degenerate_messages(raw: bytes, text: str) -> None:
    parsed = read_message(raw)
    assert parsed.text == text
    assert parsed.attachments == []


def nested(depth: int) -> bytes:
    head = b""
    tail = b""
    for level in range(depth):
        head += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
        tail = b"\r\n--b%d--\r\n" % level + tail
    return head + b"Content-Type: text/plain\r\n\r\ndeep" + tail


def test_deep_nesting_stops_at_max_depth_quickly() -> None:
    started = time.monotonic()
    parsed = read_message(nested(5000))
    assert time.monotonic() - started < 2.0
    assert parsed.truncated
    assert parsed.text is None
    shallow = read_message(nested(LIMITS.max_depth))
    assert shallow.text == "deep" and not shallow.truncated


def test_thousands_of_parts_stop_at_max_parts() -> None:
    body = b"".join(
        b"--zz\r\nContent-Type: application/x-part\r\n\r\npart %d\r\n" % i for i in range(20000)
    )
    raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n" + body + b"--zz--\r\n"
    started = time.monotonic()
    parsed = read_message(raw)
    assert time.monotonic() - started < 2.0
    assert parsed.truncated
    assert len(parsed.attachments) == LIMITS.max_parts - 1


def test_huge_headers_are_cut_at_the_header_limit() -> None:
    huge = b"Subject: " + b"A" * (5 * 1024 * 1024) + b"\r\nFrom: late@x.com\r\n\r\nbody"
    tracemalloc.start()
    started = time.monotonic()
    parsed = read_message(huge)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 4 * 1024 * 1024
    assert parsed.headers.subject is not None
    assert len(parsed.headers.subject) == LIMITS.max_header_value_chars
    assert parsed.headers.from_ == []  # beyond the header limit
    assert parsed.text == "body"


def test_hostile_structured_headers() -> None:
    raw = (
        b"From: " + b"(" * 20000 + b"x@y.com\r\n"
        b"To: " + b"a@b.c, " * 5000 + b"\r\n"
        b"Date: " + b"9" * 500 + b"\r\n"
        b"Subject: =?utf-8?b?!!!?= =?bogus-charset?q?x?=\r\n"
        b'Content-Type: text/plain; charset="' + b"\\" * 20000 + b'"\r\n\r\nok'
    )
    parsed = read_message(raw)
    assert parsed.headers.date is None
    assert len(parsed.headers.to) <= 200
    assert parsed.text == "ok"


def test_big_attachment_is_measured_not_kept() -> None:
    payload = base64.encodebytes(b"\x01" * (3 * 1024 * 1024))
    raw = (
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="big.bin"\r\n\r\n' + payload + b"--zz--\r\n"
    )
    small = MimeLimits(max_part_bytes=1024 * 1024)
    [att] = read_message(raw, small).attachments
    assert att.size == 3 * 1024 * 1024
    [att] = read_message(raw).attachments
    assert att.size == 3 * 1024 * 1024


def test_text_part_over_the_limit_is_cut() -> None:
    raw = b"Content-Type: text/plain\r\n\r\n" + b"x" * 5000
    parsed = read_message(raw, MimeLimits(max_part_bytes=1000))
    assert parsed.text == "x" * 1000
    assert parsed.truncated


def test_time_budget_returns_what_was_read() -> None:
    parsed = read_message(ordinary(), MimeLimits(time_budget=-1.0))
    assert parsed.truncated
    assert parsed.headers.subject == "re: launch ☃"


@pytest.mark.parametrize("surrogate_source", [b"=?utf-7?q?+2AA-?=", b"=?utf-16-le?b?ANg=?="])
def test_output_is_always_valid_utf8(surrogate_source: bytes) -> None:
    parsed = read_message(b"Subject: " + surrogate_source + b"\r\n\r\n")
    assert parsed.headers.subject is not None
    parsed.headers.subject.encode("utf-8")


BROKEN_WORDS = ["=?utf-8?b?A?=", "=?utf-8?b?QUJD?==?utf-8?b?A?=", "=?utf-8?b?QQ?=x=?utf-8?b?A?="]


@pytest.mark.parametrize("word", BROKEN_WORDS)
def test_broken_encoded_words_stay_as_written(word: str) -> None:
    raw = (
        f"Subject: {word}\r\nFrom: {word} <a@b.c>\r\n"
        "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nok\r\n--zz\r\n"
        f"Content-Type: application/pdf; name={word}\r\n\r\nx\r\n--zz--\r\n"
    ).encode()
    parsed = read_message(raw)
    for headers in (parsed.headers, read_summary(raw)):
        assert headers.subject == word
        assert headers.from_ == [f"{word} <a@b.c>"]
    assert parsed.text == "ok"
    assert [a.filename for a in parsed.attachments] == [word]


ENCODED_WORD = st.builds(
    "=?{}?{}?{}?=".format,
    st.sampled_from(["utf-8", "iso-8859-1", "x-nope", "", "utf-7", "utf-16"]),
    st.sampled_from(["b", "q", "B", "Q", "x", ""]),
    st.text(alphabet="=?ABCQZaz09+/_-", max_size=12),
)
ENCODED_WORDISH = st.lists(
    st.one_of(ENCODED_WORD, st.text(alphabet=" <>@\"'(),;:ab", max_size=6)), max_size=6
).map("".join)


@settings(max_examples=300, deadline=None)
@given(subject=ENCODED_WORDISH, sender=ENCODED_WORDISH, name=ENCODED_WORDISH)
def test_encoded_word_lookalikes_never_raise(subject: str, sender: str, name: str) -> None:
    raw = (
        f"Subject: {subject}\r\nFrom: {sender}\r\nTo: {sender}, {subject}\r\n"
        "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
        f"Content-Type: application/x; name={name}\r\n"
        f'Content-Disposition: attachment; filename="{name}"\r\n\r\nx\r\n--zz--\r\n'
    ).encode()
    read_summary(raw)
    read_message(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=4000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    parsed = read_message(b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n" + raw)
    for text in (parsed.text, parsed.html, parsed.headers.subject):
        if text is not None:
            text.encode("utf-8")


def test_boundary_lookalikes_everywhere_stay_fast() -> None:
    body = b"x--zz " * 300_000 + b"\r\n--zz\r\n\r\nreal\r\n--zz--"
    raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\n" + body
    started = time.monotonic()
    parsed = read_message(raw)
    assert time.monotonic() - started < 3.0
    assert parsed.text is not None and parsed.text.endswith("real")


def test_transport_padding_and_bare_lf_delimiters() -> None:
    raw = (
        b"Content-Type: multipart/alternative; boundary=b\n\n--b \t\nContent-Type: text/plain\n\n"
        b"one\n--b\nContent-Type: text/html\n\n<p>two</p>\n--b-- \n"
    )
    parsed = read_message(raw)
    assert (parsed.text, parsed.html) == ("one", "<p>two</p>")
