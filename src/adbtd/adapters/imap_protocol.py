"""imaplib's client, extended for the pool: the folder a connection has open (refreshed by a
NOOP instead of opened again), a NOOP with the next read pipelined behind it, and FETCH answers
read into items (filtered to what was asked, as servers mix in unsolicited flag news).

Folder names are sent as one IMAP quoted string in modified UTF-7, so no input can smuggle a
second command.
"""

from __future__ import annotations

import base64
import imaplib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adbtd.errors import ImapFailure, NotFound, ValidationFailed

MAX_FOLDER_CHARS = 255
RECENT = "\\Recent"  # per-session and gone in IMAP4rev2: never reported

_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_MISSING_FOLDER = (b"[NONEXISTENT]", b"[CANNOT]", b"doesn't exist", b"Invalid mailbox name")


@dataclass(frozen=True, slots=True)
class FetchedItem:
    """One message as a FETCH response gave it: metadata and one body section (or b"")."""

    uid: int
    flags: list[str]
    size: int
    internaldate: str | None
    section: bytes


def quote_folder(name: str) -> str:
    """A folder name as one IMAP quoted string (modified UTF-7 inside); bad names → 400."""
    if not name or any(ch in name for ch in "\r\n\x00"):
        raise ValidationFailed("folder must be a non-empty name without CR, LF or NUL")
    if len(name) > MAX_FOLDER_CHARS:
        raise ValidationFailed(f"folder must be at most {MAX_FOLDER_CHARS} characters")
    try:
        encoded = encode_modified_utf7(name)
    except UnicodeEncodeError:
        raise ValidationFailed("folder is not valid Unicode") from None
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_modified_utf7(name: str) -> str:
    """RFC 3501 §5.1.3: printable ASCII as is (``&`` as ``&-``), the rest as ``&base64-``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


@dataclass(slots=True)
class OpenFolder:
    """The folder a connection has selected: how, and what the server last said of it."""

    quoted: str
    readonly: bool
    total: int
    uid_validity: int | None


Command = tuple[str, ...]  # ("FETCH", "1:25", "(UID FLAGS)") or ("UID", "SEARCH", ...)
Answer = tuple[str, list[Any]]  # imaplib's (type, data) of a command


@dataclass(frozen=True, slots=True)
class FolderNews:
    """What a NOOP told of the open folder, and the answer to the command sent behind it."""

    ok: bool
    exists: list[bytes]
    expunged: list[bytes]
    answer: Answer | None


class ImapConnection(imaplib.IMAP4_SSL):
    """imaplib's client, remembering the folder it has open: a repeat read of that folder asks
    the server for news with NOOP instead of opening it again (EXAMINE costs 2-4x a NOOP), with
    the read itself sent right behind the NOOP, so both take one round trip."""

    opened: OpenFolder | None = None

    def noop_and(self, command: Command | None) -> FolderNews:
        """NOOP, and ``command`` pipelined behind it. imaplib has no public pipelining; its
        ``_command`` (send) and ``_command_complete`` (read to the tagged reply) are what each of
        its public commands runs. The server may answer the two in either order, so the news is
        read once both are done, and a FETCH answer may hold unsolicited flag news too."""
        noop_tag = self._command("NOOP")
        tag = self._command(*command) if command else None
        typ, _ = self._command_complete("NOOP", noop_tag)
        answer: Answer | None = None
        if command and tag is not None:
            key = "SEARCH" if command[:2] == ("UID", "SEARCH") else "FETCH"
            try:
                answer = self._untagged_response(*self._command_complete(command[0], tag), key)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error:  # BAD: e.g. a range the news made invalid
                answer = ("BAD", [])
        exists = [v for v in self.response("EXISTS")[1] if isinstance(v, bytes)]
        expunged = [v for v in self.response("EXPUNGE")[1] if isinstance(v, bytes)]
        self.untagged_responses.pop("FETCH", None)  # flag news nobody asked for
        return FolderNews(typ == "OK", exists, expunged, answer)


def open_folder(
    conn: ImapConnection,
    quoted: str,
    folder: str,
    *,
    readonly: bool,
    ahead: Callable[[OpenFolder], Command | None] | None = None,
) -> tuple[OpenFolder, Answer | None]:
    """The folder opened (EXAMINE, or SELECT to write); unknown folder → NotFound.

    Already open the same way on this connection: a NOOP brings its message count up to date,
    and the command ``ahead`` makes from the folder as last seen goes in the same round trip;
    its answer is returned (None when the folder had to be opened again)."""
    current = conn.opened
    if current is not None and (current.quoted, current.readonly) == (quoted, readonly):
        news = conn.noop_and(ahead(current) if ahead else None)
        if news.ok and _apply_news(current, news):
            return current, news.answer
    conn.opened = None
    typ, data = conn.select(quoted, readonly=readonly)
    if typ != "OK":
        text = data[0] if data and isinstance(data[0], bytes) else b""
        if any(marker in text for marker in _MISSING_FOLDER):
            raise NotFound(f"folder {folder!r} not found")
        raise ImapFailure(f"IMAP server refused the folder: {text.decode('utf-8', 'replace')}")
    total = int(data[0] or 0) if data and isinstance(data[0], bytes) else 0
    conn.response("EXISTS")  # taken: only later counts are news
    conn.opened = OpenFolder(quoted, readonly, total, _uid_validity(conn))
    return conn.opened, None


def _apply_news(current: OpenFolder, news: FolderNews) -> bool:
    """Update the message count from EXISTS/EXPUNGE (of the NOOP and of commands since the last
    read); False when it cannot be known from them and the folder must be opened again."""
    if news.exists and news.expunged:  # imaplib keeps them apart, so their order is lost
        return False
    total = int(news.exists[-1]) if news.exists else current.total - len(news.expunged)
    if total < 0:
        return False
    current.total = total
    return True


def _uid_validity(conn: ImapConnection) -> int | None:
    _, data = conn.response("UIDVALIDITY")
    try:
        return int(data[0]) if data and data[0] else None
    except (TypeError, ValueError):
        return None


def parse_fetch(
    data: Sequence[object], wanted: Callable[[int, int], bool] | None = None
) -> dict[int, FetchedItem]:
    """imaplib's FETCH data (tuples of header line and literal, then the line's tail), by UID.

    The server may mix in unsolicited FETCH responses (flag news of other messages, or of the
    same one): ``wanted(seq, uid)`` keeps only what was asked for, and two responses of one
    message are merged, its newest flags over what the other one carried."""
    found: dict[int, FetchedItem] = {}
    index = 0
    while index < len(data):
        entry = data[index]
        index += 1
        if isinstance(entry, tuple):
            meta, section = bytes(entry[0]), bytes(entry[1])
            tail = data[index] if index < len(data) else None
            if isinstance(tail, bytes) and tail.startswith((b")", b" ")):
                meta += b" " + tail
                index += 1
        elif isinstance(entry, bytes):
            meta, section = entry, b""
        else:
            continue
        uid_match, seq = _UID.search(meta), meta.split(b" ", 1)[0]
        if uid_match is None or not seq.isdigit():
            continue
        uid = int(uid_match.group(1))
        if wanted is not None and not wanted(int(seq), uid):
            continue
        flags = _FLAGS.search(meta)
        size = _SIZE.search(meta)
        date = _INTERNALDATE.search(meta)
        item = FetchedItem(
            uid=uid,
            flags=[f for f in flags.group(1).decode("utf-8", "replace").split() if f != RECENT]
            if flags
            else [],
            size=int(size.group(1)) if size else len(section),
            internaldate=date.group(1).decode("ascii", "replace") if date else None,
            section=section,
        )
        earlier = found.get(uid)
        if earlier is not None:
            item = _merged(earlier, item, has_flags=flags is not None, has_body=bool(size))
        found[uid] = item
    return found


def _merged(
    earlier: FetchedItem, later: FetchedItem, *, has_flags: bool, has_body: bool
) -> FetchedItem:
    """One message answered twice: the later flags (if it had any), the body of the one with
    a body."""
    body = later if has_body or later.section else earlier
    return FetchedItem(
        uid=earlier.uid,
        flags=later.flags if has_flags else earlier.flags,
        size=body.size,
        internaldate=body.internaldate or earlier.internaldate,
        section=body.section,
    )
