"""Build an outgoing message from an API send request: validation first, then RFC 5322 bytes.

Pure: no I/O, no clock the caller cannot pass in. The MIME body is what the stdlib's ``email``
makes under ``policy.default`` (``mime_body``; 7-bit clean so no 8BITMIME is needed); the
top-level headers are written here so that any Unicode in ``subject`` or display names
survives exactly (RFC 2047 encoded words, folded only between words), which ``policy.default``
cannot promise for characters such as U+2028 or a leading space. Bcc recipients go to the
envelope only.
"""

from __future__ import annotations

import base64
import functools
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from adbtd.errors import ValidationFailed
from adbtd.services.mime_body import render_body

MAX_RECIPIENTS = 50
MAX_BODY_BYTES = 5_000_000  # text + html as UTF-8; stays under Postfix's 10 MB after encoding
MAX_SUBJECT_CHARS = 998
MAX_NAME_CHARS = 256
MAX_ADDRESS_INPUT_CHARS = 600
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\x00")

_EW_PREFIX, _EW_SUFFIX = "=?utf-8?b?", "?="
_EW_MAX_BYTES = 45  # 60 base64 chars: each encoded word stays within RFC 2047's 75
_ATEXT_SPECIALS = set('()<>[]:;@\\,."')
_FOLD_AT = 78


@dataclass(frozen=True, slots=True)
class Recipient:
    """A validated address (ASCII: IDN domains in punycode) and its optional display name."""

    address: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ComposedMessage:
    """What the SMTP client submits: envelope sender and recipients, and the message bytes."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated send request, not yet tied to a sender: ``render`` finishes it."""

    from_name: str
    to: tuple[Recipient, ...]
    cc: tuple[Recipient, ...]
    bcc: tuple[Recipient, ...]
    reply_to: Recipient | None
    subject: str
    body: bytes

    def render(
        self, *, sender: str, now: datetime, message_id: str | None = None
    ) -> ComposedMessage:
        """The message as sent from ``sender`` (the mailbox's own address) at ``now``."""
        domain = sender.rpartition("@")[2]
        message_id = message_id or f"<{secrets.token_hex(16)}@{domain}>"
        headers = [
            ("From", format_address(Recipient(sender, self.from_name))),
            ("To", address_list("To", self.to)),
        ]
        if self.cc:
            headers.append(("Cc", address_list("Cc", self.cc)))
        if self.reply_to is not None:
            headers.append(("Reply-To", format_address(self.reply_to)))
        headers += [
            ("Subject", encode_unstructured(self.subject)),
            ("Date", format_datetime(now)),
            ("Message-ID", message_id),
        ]
        head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
        envelope = _unique([r.address for r in (*self.to, *self.cc, *self.bcc)])
        return ComposedMessage(message_id, sender, tuple(envelope), head + self.body)


def prepare_message(
    *,
    to: str | list[str],
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
    subject: str,
    text: str | None = None,
    html: str | None = None,
    from_name: str | None = None,
    reply_to: str | None = None,
) -> Draft:
    """Validate a send request; any bad input raises ``ValidationFailed`` (400)."""
    to_list = parse_recipients("to", [to] if isinstance(to, str) else to)
    cc_list = parse_recipients("cc", cc or [])
    bcc_list = parse_recipients("bcc", bcc or [])
    total = len(to_list) + len(cc_list) + len(bcc_list)
    if not to_list:
        raise ValidationFailed("to: at least one recipient is required")
    if total > MAX_RECIPIENTS:
        raise ValidationFailed(f"at most {MAX_RECIPIENTS} recipients (to + cc + bcc), got {total}")
    check_header_text("subject", subject, MAX_SUBJECT_CHARS)
    if from_name is not None:
        check_header_text("fromName", from_name, MAX_NAME_CHARS)
    reply = parse_address("replyTo", reply_to) if reply_to is not None else None
    body = build_body(text, html)
    return Draft(
        from_name or "", tuple(to_list), tuple(cc_list), tuple(bcc_list), reply, subject, body
    )


def build_message(
    *,
    sender: str,
    now: datetime,
    message_id: str | None = None,
    **request: Any,
) -> ComposedMessage:
    """Validate a send request and build the message in one step (see ``prepare_message``)."""
    return prepare_message(**request).render(sender=sender, now=now, message_id=message_id)


def build_body(text: str | None, html: str | None) -> bytes:
    """The MIME entity (its own headers included): text, html, or multipart/alternative."""
    if text is not None:
        check_unicode("text", text)
    if html is not None:
        check_unicode("html", html)
    if not text and not html:
        raise ValidationFailed("text or html (or both) is required and must not be empty")
    size = len((text or "").encode()) + len((html or "").encode())
    if size > MAX_BODY_BYTES:
        raise ValidationFailed(f"text + html must be at most {MAX_BODY_BYTES} bytes, got {size}")
    return render_body(text, html)


def parse_recipients(field: str, values: list[str]) -> list[Recipient]:
    if len(values) > MAX_RECIPIENTS:
        raise ValidationFailed(f"{field}: at most {MAX_RECIPIENTS} recipients")
    return [parse_address(f"{field}[{i}]", value) for i, value in enumerate(values)]


def parse_address(field: str, value: str) -> Recipient:
    """``addr@example.com`` or ``Name <addr@example.com>`` (the name may be quoted)."""
    if len(value) > MAX_ADDRESS_INPUT_CHARS:
        raise ValidationFailed(f"{field}: address is too long")
    check_header_text(field, value, MAX_ADDRESS_INPUT_CHARS)
    raw = value.strip()
    name = ""
    if raw.endswith(">") and "<" in raw:
        cut = raw.rindex("<")
        name, raw = _unquote_name(raw[:cut].strip()), raw[cut + 1 : -1].strip()
    try:
        address = checked_address(raw)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"{field}: invalid email address ({exc})") from None
    return Recipient(address, name)


@functools.lru_cache(maxsize=4096)
def checked_address(raw: str) -> str:
    """The address as sent (ASCII, IDN domains in punycode); remembered, as most senders
    write to the same addresses again (``email_validator`` is the costliest part of a send)."""
    checked = validate_email(
        raw, check_deliverability=False, allow_smtputf8=False, test_environment=True
    )
    return checked.ascii_email or checked.normalized


def _unquote_name(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        inner, out, escaped = name[1:-1], [], False
        for ch in inner:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return name


def check_header_text(field: str, value: str, max_chars: int) -> None:
    """Header values may hold any Unicode but never CR, LF or NUL."""
    check_unicode(field, value)
    if any(bad in value for bad in FORBIDDEN_IN_HEADERS):
        raise ValidationFailed(f"{field} must not contain CR, LF or NUL")
    if len(value) > max_chars:
        raise ValidationFailed(f"{field} must be at most {max_chars} characters")


def check_unicode(field: str, value: str) -> None:
    """Lone surrogates (possible through JSON escapes) cannot be encoded in UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed(f"{field} is not valid Unicode (lone surrogate)") from None


def format_address(recipient: Recipient) -> str:
    """``addr``, ``Name <addr>``, ``"Quoted, Name" <addr>`` or encoded words ``<addr>``."""
    name = recipient.name
    if not name:
        return recipient.address
    if _plain_ascii(name) and not (_ATEXT_SPECIALS & set(name)):
        return f"{name} <{recipient.address}>"
    if _plain_ascii(name):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{recipient.address}>'
    return f"{encoded_words(name)} <{recipient.address}>"


def address_list(header: str, recipients: tuple[Recipient, ...]) -> str:
    """Addresses joined by commas, folded between addresses so that no line of the header is
    longer than 78 characters where it can be helped (RFC 5322: never more than 998)."""
    out = ""
    line = len(header) + 2  # "To: "
    for index, recipient in enumerate(recipients):
        text = format_address(recipient)
        first = text.split("\r\n", 1)[0]
        if index:
            if line + 2 + len(first) > _FOLD_AT:
                out += ",\r\n "
                line = 1
            else:
                out += ", "
                line += 2
        out += text
        line = len(text) - text.rfind("\r\n") - 2 if "\r\n" in text else line + len(text)
    return out


def encode_unstructured(value: str) -> str:
    """A Subject as is when it is plain ASCII, else RFC 2047 encoded words."""
    return value if _plain_ascii(value) else encoded_words(value)


def encoded_words(value: str) -> str:
    """UTF-8 base64 encoded words, never splitting a character, folded between words."""
    chunks: list[bytes] = []
    chunk = b""
    for ch in value:
        piece = ch.encode("utf-8")
        if len(chunk) + len(piece) > _EW_MAX_BYTES:
            chunks.append(chunk)
            chunk = b""
        chunk += piece
    if chunk or not chunks:
        chunks.append(chunk)
    words = [_EW_PREFIX + base64.b64encode(c).decode("ascii") + _EW_SUFFIX for c in chunks]
    return "\r\n ".join(words)


def _plain_ascii(value: str) -> bool:
    """Printable ASCII, no edge or double spaces, nothing a decoder would take for a word."""
    return (
        value.isascii()
        and value.isprintable()
        and value == value.strip()
        and "  " not in value
        and "=?" not in value
        and len(value) <= 900
    )


def _unique(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return out
