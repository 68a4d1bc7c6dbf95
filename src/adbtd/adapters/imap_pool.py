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
from typing import Any, Protocol, TypeVar

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


def _open_folder(
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


def _list_page(
    conn: ImapConnection,
    quoted: str,
    folder: str,
    limit: int,
    before: int | None,
    known: KnownMessages | None,
) -> FolderPage:
    warm_items = FLAGS_ONLY  # what a page asks for when ``known`` holds the folder

    def page_ahead(seen: OpenFolder) -> Command | None:
        """The page as the folder was last seen, to send behind the NOOP."""
        if seen.uid_validity is None or known is None or not known.any(seen.uid_validity):
            return None
        if before is not None:
            return ("UID", "SEARCH", f"UID 1:{before - 1}") if before > 1 else None
        if seen.total == 0:
            return None
        return ("FETCH", f"{max(1, seen.total - limit + 1)}:{seen.total}", warm_items)

    last_total = conn.opened.total if conn.opened is not None else -1
    opened, early = _open_folder(conn, quoted, folder, readonly=True, ahead=page_ahead)
    total, uid_validity = opened.total, opened.uid_validity
    if total == 0 or before == 1:
        return FolderPage(total, uid_validity, [], False)
    # Warm: flags of the page first, then everything only for what the caller lacks. (A page
    # sent ahead was warm when sent, whatever the cache holds by now.)
    early_ok = early is not None and early[0] == "OK"
    warm = early_ok or (known is not None and uid_validity is not None and known.any(uid_validity))
    items = warm_items if warm else LIST_ITEMS
    if before is None:  # the newest page by sequence numbers: one round trip, no SEARCH
        first = max(1, total - limit + 1)
        if early is not None and early_ok and total == last_total:
            typ, data = early  # the count did not move: the pipelined page is the page
        else:
            typ, data = conn.fetch(f"{first}:{total}", items)
        more = first > 1
        wanted: Callable[[int, int], bool] = lambda seq, _uid: first <= seq <= total  # noqa: E731

    else:
        if early is not None and early_ok:
            typ, found = early  # UIDs do not move
        else:
            typ, found = conn.uid("SEARCH", f"UID 1:{before - 1}")
        hits = found[0] if typ == "OK" and found and isinstance(found[0], bytes) else b""
        uids = sorted(int(u) for u in hits.split())
        more = len(uids) > limit
        uids = uids[-limit:]
        if not uids:
            return FolderPage(total, uid_validity, [], False)
        typ, data = conn.uid("FETCH", ",".join(map(str, uids)), items)
        page_uids = set(uids)
        wanted = lambda _seq, uid: uid in page_uids  # noqa: E731

    if typ != "OK":
        raise ImapFailure("IMAP server refused to fetch the folder's messages")
    fetched = _parse_fetch(data, wanted)
    if warm and known is not None and uid_validity is not None:
        lacking = [uid for uid in fetched if not known.has(uid_validity, uid)]
        if lacking:
            typ, data = conn.uid("FETCH", ",".join(map(str, lacking)), LIST_ITEMS)
            if typ != "OK":
                raise ImapFailure("IMAP server refused to fetch the folder's messages")
            whole = _parse_fetch(data, lambda _seq, uid: uid in lacking)
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
    whole = f"(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[]<0.{max_bytes}>)"

    def fetch_ahead(seen: OpenFolder) -> Command:
        """UIDs do not move: the fetch can go behind the NOOP whatever its news."""
        warm = known is not None and seen.uid_validity is not None
        held = warm and known is not None and known.has(seen.uid_validity or 0, uid)
        return ("UID", "FETCH", str(uid), FLAGS_ONLY if held else whole)

    opened, early = _open_folder(conn, quoted, folder, readonly=not mark_seen, ahead=fetch_ahead)
    uid_validity = opened.uid_validity
    if early is not None and early[0] in ("OK", "NO"):
        typ, data = early
    else:
        warm = known is not None and uid_validity is not None and known.has(uid_validity, uid)
        typ, data = conn.uid("FETCH", str(uid), FLAGS_ONLY if warm else whole)
    item = _parse_fetch(data, lambda _seq, got: got == uid).get(uid) if typ == "OK" else None
    if item is None:
        raise NotFound(f"message {uid} not found in folder {folder!r}")
    if mark_seen and "\\Seen" not in item.flags:
        typ, data = conn.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
        stored = _parse_fetch(data, lambda _seq, got: got == uid).get(uid) if typ == "OK" else None
        flags = stored.flags if stored is not None else [*item.flags, "\\Seen"]
        item = FetchedItem(item.uid, flags, item.size, item.internaldate, item.section)
    return FetchedMessage(uid_validity, item)


def _uid_validity(conn: ImapConnection) -> int | None:
    _, data = conn.response("UIDVALIDITY")
    try:
        return int(data[0]) if data and data[0] else None
    except (TypeError, ValueError):
        return None


def _parse_fetch(
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text) or type(exc).__name__
