"""Read a mailbox's folders over warm, authenticated IMAP connections (implicit TLS).

Listing opens the folder with EXAMINE (read-only), so it can never change flags; fetching one
message reads ``BODY.PEEK[]`` and sets ``\\Seen`` only when asked (then with SELECT + UID STORE).
Folder names are sent as one IMAP quoted string in modified UTF-7, so no input can smuggle a
second command. Every operation here is idempotent, so a dropped connection is retried once.
"""

from __future__ import annotations

import base64
import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from adbtd.adapters.pool import (
    ClientTls,
    ConnectionDropped,
    KeyedPool,
    Login,
    PoolBusy,
    PoolLimits,
)
from adbtd.errors import ImapFailure, NotFound, ValidationFailed

DEFAULT_LIMITS = PoolLimits(max_per_key=4, max_total=64, idle_timeout=300.0, check_after=1.0)
MAX_FOLDER_CHARS = 255
LIST_HEADER_FIELDS = "MESSAGE-ID SUBJECT FROM TO CC DATE"
LIST_ITEMS = f"(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS ({LIST_HEADER_FIELDS})])"
FLAGS_ONLY = "(UID FLAGS)"
CLOSE_TIMEOUT = 2.0
RECENT = "\\Recent"  # per-session and gone in IMAP4rev2: never reported

R = TypeVar("R")

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


@dataclass(frozen=True, slots=True)
class FolderPage:
    total: int
    uid_validity: int | None
    items: list[FetchedItem]  # flags only (empty ``section``) for the messages ``known`` held
    more: bool


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    uid_validity: int | None
    item: FetchedItem  # flags only (empty ``section``) when ``known`` held the message


class KnownMessages(Protocol):
    """What the caller already holds of a folder, so only flags are asked for those messages
    (headers, bodies, sizes and dates never change while UIDVALIDITY holds)."""

    def any(self, uid_validity: int) -> bool: ...

    def has(self, uid_validity: int, uid: int) -> bool: ...


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


class ImapConnection(imaplib.IMAP4_SSL):
    """imaplib's client, remembering the folder it has open: a repeat read of that folder asks
    the server for news with NOOP instead of opening it again (EXAMINE costs 2-4x a NOOP)."""

    opened: OpenFolder | None = None


class ImapConnector:
    """Opens IMAP over TLS and logs in as the mailbox."""

    def __init__(self, *, tls: ClientTls, timeout: float = 30.0) -> None:
        self.tls = tls
        self.timeout = timeout

    def open(self, login: Login) -> ImapConnection:
        where = f"{login.host}:{login.port}"
        try:
            conn = ImapConnection(
                login.host, login.port, ssl_context=self.tls.context(), timeout=self.timeout
            )
        except (OSError, imaplib.IMAP4.error) as exc:
            raise ImapFailure(f"cannot connect to IMAP server {where}: {_describe(exc)}") from exc
        try:
            conn.login(login.username, login.password)
        except (OSError, imaplib.IMAP4.error) as exc:
            self.close(conn)
            raise ImapFailure(f"IMAP login as {login.username} refused: {_describe(exc)}") from exc
        except BaseException:
            self.close(conn)
            raise
        return conn

    def check(self, conn: ImapConnection) -> bool:
        return conn.noop()[0] == "OK"

    def usable(self, conn: ImapConnection) -> bool:
        return conn.state in ("AUTH", "SELECTED")

    def close(self, conn: ImapConnection) -> None:
        try:
            conn.sock.settimeout(CLOSE_TIMEOUT)
            conn.logout()
        except (OSError, imaplib.IMAP4.error, ValueError):
            conn.shutdown()


class ImapPool:
    """Warm IMAP connections per mailbox; see ``adbtd.adapters.pool`` for the rules."""

    def __init__(
        self, *, tls: ClientTls, limits: PoolLimits = DEFAULT_LIMITS, timeout: float = 30.0
    ) -> None:
        self.pool: KeyedPool[ImapConnection] = KeyedPool(
            ImapConnector(tls=tls, timeout=timeout), limits, name="imap"
        )

    def list_page(
        self,
        login: Login,
        folder: str,
        *,
        limit: int,
        before: int | None,
        known: KnownMessages | None = None,
    ) -> FolderPage:
        """The newest ``limit`` messages with UID < ``before``, newest first, with headers."""
        quoted = quote_folder(folder)
        return self._run(login, lambda conn: _list_page(conn, quoted, folder, limit, before, known))

    def fetch(
        self,
        login: Login,
        folder: str,
        uid: int,
        *,
        mark_seen: bool,
        max_bytes: int,
        known: KnownMessages | None = None,
    ) -> FetchedMessage:
        """One whole message (at most ``max_bytes`` of it); ``\\Seen`` set only if asked."""
        quoted = quote_folder(folder)
        return self._run(
            login, lambda conn: _fetch_one(conn, quoted, folder, uid, mark_seen, max_bytes, known)
        )

    def evict(self, mailbox_id: str) -> int:
        return self.pool.evict(mailbox_id)

    def close(self) -> None:
        self.pool.close()

    def _run(self, login: Login, operation: Callable[[ImapConnection], R]) -> R:
        try:
            return self.pool.run(login, lambda conn: _guard(conn, operation))
        except ConnectionDropped as exc:
            raise ImapFailure(f"IMAP connection lost: {exc}") from exc
        except PoolBusy as exc:
            raise ImapFailure(str(exc)) from exc


def _guard(conn: ImapConnection, operation: Callable[[ImapConnection], R]) -> R:
    """Library errors → ours: socket trouble is a dropped connection, the rest imap_error."""
    try:
        return operation(conn)
    except (imaplib.IMAP4.abort, OSError, ssl.SSLError) as exc:
        conn.shutdown()
        raise ConnectionDropped(_describe(exc)) from exc
    except imaplib.IMAP4.error as exc:
        raise ImapFailure(f"IMAP server refused the request: {_describe(exc)}") from exc


def _open_folder(conn: ImapConnection, quoted: str, folder: str, *, readonly: bool) -> OpenFolder:
    """The folder opened (EXAMINE, or SELECT to write); unknown folder → NotFound. Already open
    the same way on this connection: a NOOP brings its message count up to date."""
    current = conn.opened
    same = current is not None and (current.quoted, current.readonly) == (quoted, readonly)
    if same and current is not None and _refresh(conn, current):
        return current
    conn.opened = None
    typ, data = conn.select(quoted, readonly=readonly)
    if typ != "OK":
        text = data[0] if data and isinstance(data[0], bytes) else b""
        if any(marker in text for marker in _MISSING_FOLDER):
            raise NotFound(f"folder {folder!r} not found")
        raise ImapFailure(f"IMAP server refused the folder: {text.decode('utf-8', 'replace')}")
    total = int(data[0] or 0) if data and isinstance(data[0], bytes) else 0
    conn.opened = OpenFolder(quoted, readonly, total, _uid_validity(conn))
    return conn.opened


def _refresh(conn: ImapConnection, current: OpenFolder) -> bool:
    """NOOP, then apply the EXISTS/EXPUNGE news (of it and of commands since the last read);
    False when the count cannot be known from them and the folder must be opened again."""
    if conn.noop()[0] != "OK":
        return False
    exists = [v for v in conn.response("EXISTS")[1] if isinstance(v, bytes)]
    expunged = [v for v in conn.response("EXPUNGE")[1] if isinstance(v, bytes)]
    conn.untagged_responses.pop("FETCH", None)  # flag news: not to be read as our FETCH's answer
    if exists and expunged:  # imaplib keeps them apart, so their order is lost
        return False
    current.total = int(exists[-1]) if exists else current.total - len(expunged)
    return current.total >= 0


def _list_page(
    conn: ImapConnection,
    quoted: str,
    folder: str,
    limit: int,
    before: int | None,
    known: KnownMessages | None,
) -> FolderPage:
    opened = _open_folder(conn, quoted, folder, readonly=True)
    total, uid_validity = opened.total, opened.uid_validity
    if total == 0 or before == 1:
        return FolderPage(total, uid_validity, [], False)
    # Warm: flags of the page first, then everything only for what the caller lacks.
    warm = known is not None and uid_validity is not None and known.any(uid_validity)
    items = FLAGS_ONLY if warm else LIST_ITEMS
    if before is None:  # the newest page by sequence numbers: one round trip, no SEARCH
        first = max(1, total - limit + 1)
        typ, data = conn.fetch(f"{first}:{total}", items)
        more = first > 1
    else:
        typ, found = conn.uid("SEARCH", f"UID 1:{before - 1}")
        hits = found[0] if typ == "OK" and found and isinstance(found[0], bytes) else b""
        uids = sorted(int(u) for u in hits.split())
        more = len(uids) > limit
        uids = uids[-limit:]
        if not uids:
            return FolderPage(total, uid_validity, [], False)
        typ, data = conn.uid("FETCH", ",".join(map(str, uids)), items)
    if typ != "OK":
        raise ImapFailure("IMAP server refused to fetch the folder's messages")
    fetched = _parse_fetch(data)
    if warm and known is not None and uid_validity is not None:
        lacking = [uid for uid in fetched if not known.has(uid_validity, uid)]
        if lacking:
            typ, data = conn.uid("FETCH", ",".join(map(str, lacking)), LIST_ITEMS)
            if typ != "OK":
                raise ImapFailure("IMAP server refused to fetch the folder's messages")
            whole = _parse_fetch(data)
            for uid in lacking:  # one expunged in between is left out, not shown half-read
                if uid in whole:
                    fetched[uid] = whole[uid]
                else:
                    del fetched[uid]
    page = sorted(fetched.values(), key=lambda item: item.uid, reverse=True)
    if before is not None:
        page = [item for item in page if item.uid < before]
    return FolderPage(total, uid_validity, page[:limit], more)


def _fetch_one(
    conn: ImapConnection,
    quoted: str,
    folder: str,
    uid: int,
    mark_seen: bool,
    max_bytes: int,
    known: KnownMessages | None,
) -> FetchedMessage:
    uid_validity = _open_folder(conn, quoted, folder, readonly=not mark_seen).uid_validity
    warm = known is not None and uid_validity is not None and known.has(uid_validity, uid)
    items = (
        FLAGS_ONLY if warm else f"(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[]<0.{max_bytes}>)"
    )
    typ, data = conn.uid("FETCH", str(uid), items)
    item = _parse_fetch(data).get(uid) if typ == "OK" else None
    if item is None:
        raise NotFound(f"message {uid} not found in folder {folder!r}")
    if mark_seen and "\\Seen" not in item.flags:
        typ, data = conn.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
        stored = _parse_fetch(data).get(uid) if typ == "OK" else None
        flags = stored.flags if stored is not None else [*item.flags, "\\Seen"]
        item = FetchedItem(item.uid, flags, item.size, item.internaldate, item.section)
    return FetchedMessage(uid_validity, item)


def _uid_validity(conn: ImapConnection) -> int | None:
    _, data = conn.response("UIDVALIDITY")
    try:
        return int(data[0]) if data and data[0] else None
    except (TypeError, ValueError):
        return None


def _parse_fetch(data: Sequence[object]) -> dict[int, FetchedItem]:
    """imaplib's FETCH data (tuples of header line and literal, then the line's tail)."""
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
        uid = _UID.search(meta)
        if uid is None:
            continue
        flags = _FLAGS.search(meta)
        size = _SIZE.search(meta)
        date = _INTERNALDATE.search(meta)
        found[int(uid.group(1))] = FetchedItem(
            uid=int(uid.group(1)),
            flags=[f for f in flags.group(1).decode("utf-8", "replace").split() if f != RECENT]
            if flags
            else [],
            size=int(size.group(1)) if size else len(section),
            internaldate=date.group(1).decode("ascii", "replace") if date else None,
            section=section,
        )
    return found


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text) or type(exc).__name__
