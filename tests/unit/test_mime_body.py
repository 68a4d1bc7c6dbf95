"""``mime_body`` makes exactly what the stdlib's ``email`` makes for the same bodies."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adbtd.services.mime_body import render_body

STDLIB_POLICY = policy.default.clone(cte_type="7bit", linesep="\r\n")
BOUNDARY = "===============1234567890123456789=="


def stdlib_body(text: str | None, html: str | None) -> bytes:
    """The reference: the stdlib object model and generator."""

    def cte(body: str) -> str | None:
        return "quoted-printable" if "\x00" in body else None

    entity = EmailMessage(policy=STDLIB_POLICY)
    if text and html:
        entity.set_content(text, subtype="plain", charset="utf-8", cte=cte(text))
        entity.add_alternative(html, subtype="html", charset="utf-8", cte=cte(html))
        for part in entity.iter_parts():
            del part["MIME-Version"]
        entity.set_boundary(BOUNDARY)
    elif text:
        entity.set_content(text, subtype="plain", charset="utf-8", cte=cte(text))
    else:
        assert html is not None
        entity.set_content(html, subtype="html", charset="utf-8", cte=cte(html))
    return entity.as_bytes(policy=STDLIB_POLICY)


CASES = [
    ("hello\nworld", None),
    (None, "<p>hi</p>"),
    ("hello", "<p>hi</p>"),
    ("x" * 100, None),  # a long line: quoted-printable
    ("héllo " * 40, None),  # mostly non-ASCII: base64
    ("naïve café\n" * 20, "<p>ünïcödé</p>"),
    ("nul \x00 inside", None),
    ("\r\nbare\rcr\r\n\r\n", None),
    ("trailing spaces   \nand tabs\t\n", None),
    ("=" * 90 + "\n" + "--" + BOUNDARY, None),
    ("emoji 😀 " * 30, "x" * 200),
]


@pytest.mark.parametrize(("text", "html"), CASES)
def test_same_bytes_as_the_stdlib(text: str | None, html: str | None) -> None:
    assert render_body(text, html, boundary=BOUNDARY) == stdlib_body(text, html)


BODY = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=400) | st.text(
    alphabet="ab= \t\r\n.-é", min_size=1, max_size=400
)


@settings(max_examples=300, deadline=None)
@given(text=st.none() | BODY, html=st.none() | BODY)
def test_same_bytes_as_the_stdlib_for_any_bodies(text: str | None, html: str | None) -> None:
    if not text and not html:
        return
    assert render_body(text, html, boundary=BOUNDARY) == stdlib_body(text, html)


def test_the_boundary_never_starts_a_line_of_a_part() -> None:
    body = render_body("--===============", "<p>x</p>")
    marker = body.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    assert body.count(b"--" + marker) == 3  # two parts and the closing line
