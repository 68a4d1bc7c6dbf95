"""Read fetched messages within fixed limits, so hostile MIME costs bounded time and memory.

The stdlib parser recurses per nesting level and parses structured headers recursively; a
message from anyone on the internet can be built to exhaust either. This reader walks the MIME
tree itself (iteratively, on offsets into the raw bytes) and hands the stdlib only short,
truncated header values. When a limit is reached it stops and returns what it has read:

- ``max_depth`` levels of multipart nesting (deeper parts are skipped);
- ``max_parts`` MIME parts in total;
- ``max_header_bytes`` per header block, ``max_header_value_chars`` per parsed header field;
- ``max_part_bytes`` of decoded body per text part (attachments are measured, not kept);
- ``time_budget`` seconds for the whole walk.
"""

from __future__ import annotations

import binascii
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import MessageError
from email.header import decode_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

MAX_ADDRESSES = 200
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_SPECIALS = set('()<>[]:;@\\,."')
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_PADDING = re.compile(rb"[ \t]*")
_ADDR = r"[^<>\s,;:()\\\"@\[\]]+@[^<>\s,;:()\\\"@\[\]]+"
_SIMPLE_ADDRESS = re.compile(rf"^\s*(?:([^\"<>,;:()\\\[\]@]*?)\s*<({_ADDR})>|({_ADDR}))\s*$")


@dataclass(frozen=True, slots=True)
class MimeLimits:
    """The documented bounds of one parse (see the module docstring)."""

    max_depth: int = 20
    max_parts: int = 500
    max_header_bytes: int = 256 * 1024
    max_header_value_chars: int = 16 * 1024
    max_part_bytes: int = 10 * 1024 * 1024
    time_budget: float = 2.0


DEFAULT_LIMITS = MimeLimits()


@dataclass(frozen=True, slots=True)
class HeaderSummary:
    """The headers a message list shows."""

    message_id: str | None
    subject: str | None
    from_: list[str]
    to: list[str]
    cc: list[str]
    date: datetime | None


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    filename: str | None
    content_type: str
    size: int
    content_id: str | None


@dataclass(slots=True)
class ParsedMessage:
    """A whole message: headers, the text and HTML bodies, attachment metadata."""

    headers: HeaderSummary
    text: str | None = None
    html: str | None = None
    attachments: list[AttachmentInfo] = field(default_factory=list)
    truncated: bool = False


def read_summary(raw: bytes, limits: MimeLimits = DEFAULT_LIMITS) -> HeaderSummary:
    """Summarise a header block (e.g. ``BODY[HEADER.FIELDS (...)]``)."""
    head_end, _ = _split_head(raw, 0, len(raw), limits)
    return summarise(parse_header_block(raw[:head_end], limits), limits)


def read_message(raw: bytes, limits: MimeLimits = DEFAULT_LIMITS) -> ParsedMessage:
    """Parse a whole message, stopping at the limits; never raises on malformed input."""
    deadline = time.monotonic() + limits.time_budget
    view = memoryview(raw)
    head_end, body_start = _split_head(raw, 0, len(raw), limits)
    top = parse_header_block(raw[:head_end], limits)
    result = ParsedMessage(headers=summarise(top, limits))
    texts: list[str] = []
    htmls: list[str] = []
    stack: list[tuple[dict[str, str], int, int, int, str]] = [
        (top, body_start, len(raw), 0, "text/plain")
    ]
    parts = 1
    while stack:
        if time.monotonic() > deadline:
            result.truncated = True
            break
        headers, start, end, depth, default_type = stack.pop()
        info = _content_info(headers, default_type, limits)
        if info.ctype.startswith("multipart/"):
            if depth >= limits.max_depth or not info.boundary:
                result.truncated = result.truncated or depth >= limits.max_depth
                continue
            children = _split_multipart(raw, start, end, info.boundary, deadline)
            child_default = "message/rfc822" if info.ctype == "multipart/digest" else "text/plain"
            if parts + len(children) > limits.max_parts:
                children = children[: max(0, limits.max_parts - parts)]
                result.truncated = True
            parts += len(children)
            for c_start, c_end in reversed(children):
                h_end, b_start = _split_head(raw, c_start, c_end, limits)
                child_headers = parse_header_block(raw[c_start:h_end], limits)
                stack.append((child_headers, b_start, c_end, depth + 1, child_default))
            continue
        _read_leaf(view[start:end], info, limits, texts, htmls, result)
    result.text = clean(_lf("\n".join(texts))) if texts else None
    result.html = clean(_lf("\n".join(htmls))) if htmls else None
    return result


@dataclass(frozen=True, slots=True)
class _ContentInfo:
    ctype: str
    boundary: str | None
    charset: str | None
    cte: str
    disposition: str
    filename: str | None
    content_id: str | None


def _content_info(headers: dict[str, str], default_type: str, limits: MimeLimits) -> _ContentInfo:
    """Content-Type and friends through the stdlib's compat32 parameter parser."""
    msg = Message()
    for name in ("content-type", "content-disposition"):
        if name in headers:
            msg[name] = headers[name][: limits.max_header_value_chars]
    msg.set_default_type(default_type)
    try:
        ctype = msg.get_content_type()
        boundary = msg.get_boundary()
        charset = msg.get_content_charset()
        filename = msg.get_filename() or _param_str(msg.get_param("name"))
        disposition = (msg.get_content_disposition() or "").lower()
    except (ValueError, LookupError, RecursionError, TypeError):
        ctype, boundary, charset, filename, disposition = default_type, None, None, None, ""
    if boundary is not None and not 0 < len(boundary) <= 200:
        boundary = None
    cte = headers.get("content-transfer-encoding", "7bit").strip().lower()
    cid = headers.get("content-id", "").strip()[:998] or None
    return _ContentInfo(
        ctype=ctype,
        boundary=boundary,
        charset=charset,
        cte=cte,
        disposition=disposition,
        filename=clean(decode_words(filename)) if filename else None,
        content_id=clean(cid) if cid else None,
    )


def _param_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _read_leaf(
    body: memoryview,
    info: _ContentInfo,
    limits: MimeLimits,
    texts: list[str],
    htmls: list[str],
    result: ParsedMessage,
) -> None:
    is_body_text = info.ctype in ("text/plain", "text/html")
    if is_body_text and info.disposition != "attachment" and not info.filename:
        data, cut = decode_transfer(body, info.cte, limits.max_part_bytes)
        result.truncated = result.truncated or cut
        (texts if info.ctype == "text/plain" else htmls).append(decode_text(data, info.charset))
        return
    result.attachments.append(
        AttachmentInfo(
            filename=info.filename,
            content_type=info.ctype,
            size=decoded_size(body, info.cte, limits.max_part_bytes),
            content_id=info.content_id,
        )
    )


def decode_transfer(body: memoryview, cte: str, max_bytes: int) -> tuple[bytes, bool]:
    """Undo base64 / quoted-printable leniently, reading only what ``max_bytes`` needs;
    returns the decoded bytes and whether they were cut short."""
    if cte == "base64":
        needed = max_bytes * 4 // 3 + max_bytes // 38 + 8  # base64 plus its line breaks
        data = _lenient_b64(bytes(body[:needed]))
    elif cte == "quoted-printable":
        needed = max_bytes * 3 + 8
        data = binascii.a2b_qp(bytes(body[:needed]))
    else:
        needed = max_bytes + 1
        data = bytes(body[:needed])
    return data[:max_bytes], len(data) > max_bytes or len(body) > needed


def decoded_size(body: memoryview, cte: str, max_bytes: int) -> int:
    """The attachment's decoded size; large base64 is measured without decoding it."""
    if cte == "base64":
        if len(body) > max_bytes:
            payload = len(_B64_JUNK.sub(b"", bytes(body)).rstrip(b"="))
            return payload * 3 // 4
        return len(_lenient_b64(bytes(body)))
    if cte == "quoted-printable" and len(body) <= max_bytes:
        return len(binascii.a2b_qp(bytes(body)))
    return len(body)


def _lenient_b64(raw: bytes) -> bytes:
    """Base64 that ignores junk and repairs missing padding (broken senders are common)."""
    try:
        return binascii.a2b_base64(raw)  # skips line breaks and other non-alphabet bytes
    except binascii.Error:
        pass
    cleaned = _B64_JUNK.sub(b"", raw)
    cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if len(cleaned) % 4 == 1 else cleaned
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned)
    except binascii.Error:
        return b""


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes in the declared charset; unknown or non-text codecs fall back to UTF-8."""
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except (LookupError, TypeError, ValueError):
        return data.decode("utf-8", errors="replace")


def _split_head(raw: bytes, start: int, end: int, limits: MimeLimits) -> tuple[int, int]:
    """(end of the header block, start of the body) of the entity at ``raw[start:end]``."""
    if raw.startswith((b"\r\n", b"\n"), start, end):
        return start, start + (2 if raw.startswith(b"\r\n", start) else 1)
    match = _BLANK_LINE.search(raw, start, end)
    if match is None:
        return min(end, start + limits.max_header_bytes), end
    return min(match.start(), start + limits.max_header_bytes), match.end()


def _split_multipart(
    raw: bytes, start: int, end: int, boundary: str, deadline: float
) -> list[tuple[int, int]]:
    """Offsets of each body part between ``--boundary`` lines (a missing close is tolerated).

    ``bytes.find`` jumps between candidates; the line break before a delimiter belongs to it.
    """
    delimiter = b"--" + boundary.encode("ascii", "replace")
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    pos, seen = start, 0
    while (found := raw.find(delimiter, pos, end)) >= 0:
        seen += 1
        if seen % 1024 == 0 and time.monotonic() > deadline:
            break
        after = found + len(delimiter)
        closing = raw.startswith(b"--", after, end)
        line_end = _PADDING.match(raw, after + 2 if closing else after, end)
        tail = line_end.end() if line_end else after
        at_line_start = found == start or raw[found - 1] == 0x0A
        if not at_line_start or not (tail == end or raw[tail] in (0x0D, 0x0A)):
            pos = found + 1
            continue
        cut = found
        if found > start and raw[found - 1] == 0x0A:
            cut -= 2 if found - 1 > start and raw[found - 2] == 0x0D else 1
        if part_start is not None:
            spans.append((part_start, max(part_start, cut)))
        if closing:
            part_start = None
            break
        part_start = tail + (2 if raw.startswith(b"\r\n", tail, end) else 1 if tail < end else 0)
        pos = part_start
    if part_start is not None:
        spans.append((part_start, end))
    return spans


def parse_header_block(block: bytes, limits: MimeLimits = DEFAULT_LIMITS) -> dict[str, str]:
    """Unfolded header fields (first occurrence wins), names lower-cased, values as text."""
    fields: dict[str, str] = {}
    name: str | None = None
    value: list[str] = []
    for line in _LINE_END.split(block[: limits.max_header_bytes]):
        text = line.decode("utf-8", errors="replace")
        if text[:1] in (" ", "\t") and name is not None:
            value.append(text)
            continue
        if name is not None:
            fields.setdefault(name, "".join(value).strip())
        head, colon, rest = text.partition(":")
        name, value = (head.strip().lower(), [rest]) if colon and head.strip() else (None, [])
    if name is not None:
        fields.setdefault(name, "".join(value).strip())
    return fields


def summarise(headers: dict[str, str], limits: MimeLimits = DEFAULT_LIMITS) -> HeaderSummary:
    cap = limits.max_header_value_chars
    message_id = headers.get("message-id", "").strip()[:998] or None
    return HeaderSummary(
        message_id=clean(message_id) if message_id else None,
        subject=clean(decode_words(headers["subject"][:cap])) if "subject" in headers else None,
        from_=addresses(headers.get("from", "")[:cap]),
        to=addresses(headers.get("to", "")[:cap]),
        cc=addresses(headers.get("cc", "")[:cap]),
        date=parse_date(headers.get("date", "")[:200]),
    )


def decode_words(value: str) -> str:
    """RFC 2047 encoded words to text; anything undecodable stays as it was."""
    if "=?" not in value:
        return value
    try:
        pieces = decode_header(value)
    except (ValueError, LookupError, RecursionError, binascii.Error, MessageError):
        return value
    out = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_text(chunk, charset))
    return "".join(out)


def addresses(value: str) -> list[str]:
    """An address header as ``["Name <addr>", "addr", ...]``."""
    if not value.strip():
        return []
    simple = _SIMPLE_ADDRESS.match(value)
    if simple is not None:  # the common case, ~10x faster than the general parser
        name, addr = " ".join((simple.group(1) or "").split()), simple.group(2) or simple.group(3)
        return [clean(format_pair(decode_words(name), addr))]
    try:
        pairs = getaddresses([value])
    except (ValueError, RecursionError, IndexError):
        return [clean(decode_words(value))]
    out = []
    for name, addr in pairs[:MAX_ADDRESSES]:
        if not name and not addr:
            continue
        out.append(clean(format_pair(decode_words(name), addr)))
    return out


def format_pair(name: str, addr: str) -> str:
    if not name:
        return addr
    if _SPECIALS & set(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>" if addr else name


def parse_date(value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _lf(value: str) -> str:
    """Bodies travel with CRLF; JSON clients expect plain newlines."""
    return value.replace("\r\n", "\n")


def clean(value: str) -> str:
    """Text safe for JSON and UTF-8: lone surrogates become U+FFFD."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
