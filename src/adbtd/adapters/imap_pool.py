"""Read a mailbox's folders over warm, authenticated IMAP connections (implicit TLS).

Listing opens the folder with EXAMINE (read-only), so it can never change flags; fetching one
message reads ``BODY.PEEK[]`` and sets ``\\Seen`` only when asked (then with SELECT + UID STORE).
Every operation here is idempotent, so a dropped connection is retried once. The connection
itself (open folder, pipelining, FETCH parsing) is ``adbtd.adapters.imap_protocol``.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from adbtd.adapters.imap_protocol import (
    Command,
    FetchedItem,
    ImapConnection,
    OpenFolder,
    open_folder,
    parse_fetch,
    quote_folder,
)
from adbtd.adapters.pool import (
    ClientTls,
    ConnectionDropped,
    KeyedPool,
    Login,
    PoolBusy,
    PoolLimits,
)
from adbtd.errors import ImapFailure, NotFound

DEFAULT_LIMITS = PoolLimits(max_per_key=4, max_total=64, idle_timeout=300.0, check_after=1.0)
LIST_HEADER_FIELDS = "MESSAGE-ID SUBJECT FROM TO CC DATE"
LIST_ITEMS = f"(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS ({LIST_HEADER_FIELDS})])"
FLAGS_ONLY = "(UID FLAGS)"
CLOSE_TIMEOUT = 2.0

R = TypeVar("R")


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


def _list_page(
    conn: ImapConnection,
    quoted: str,
    folder: str,
    limit: int,
    before: int | None,
    known: KnownMessages | None,
) -> FolderPage:
    def page_ahead(seen: OpenFolder) -> Command | None:
        """The page as the folder was last seen, to send behind the NOOP."""
        if seen.uid_validity is None or known is None or not known.any(seen.uid_validity):
            return None
        if before is not None:
            return ("UID", "SEARCH", f"UID 1:{before - 1}") if before > 1 else None
        if seen.total == 0:
            return None
        return ("FETCH", f"{max(1, seen.total - limit + 1)}:{seen.total}", FLAGS_ONLY)

    last_total = conn.opened.total if conn.opened is not None else -1
    opened, early = open_folder(conn, quoted, folder, readonly=True, ahead=page_ahead)
    total, uid_validity = opened.total, opened.uid_validity
    if total == 0 or before == 1:
        return FolderPage(total, uid_validity, [], False)
    # Warm: flags of the page first, then everything only for what the caller lacks. (A page
    # sent ahead was warm when sent, whatever the cache holds by now.)
    early_ok = early is not None and early[0] == "OK"
    warm = early_ok or (known is not None and uid_validity is not None and known.any(uid_validity))
    items = FLAGS_ONLY if warm else LIST_ITEMS
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
    fetched = parse_fetch(data, wanted)
    if warm and known is not None and uid_validity is not None:
        lacking = [uid for uid in fetched if not known.has(uid_validity, uid)]
        if lacking:
            typ, data = conn.uid("FETCH", ",".join(map(str, lacking)), LIST_ITEMS)
            if typ != "OK":
                raise ImapFailure("IMAP server refused to fetch the folder's messages")
            whole = parse_fetch(data, lambda _seq, uid: uid in lacking)
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

    def items_for(uid_validity: int | None) -> str:
        held = known is not None and uid_validity is not None and known.has(uid_validity, uid)
        return FLAGS_ONLY if held else whole

    def fetch_ahead(seen: OpenFolder) -> Command:
        """UIDs do not move: the fetch can go behind the NOOP whatever its news."""
        return ("UID", "FETCH", str(uid), items_for(seen.uid_validity))

    opened, early = open_folder(conn, quoted, folder, readonly=not mark_seen, ahead=fetch_ahead)
    if early is not None and early[0] in ("OK", "NO"):
        typ, data = early
    else:
        typ, data = conn.uid("FETCH", str(uid), items_for(opened.uid_validity))

    def this_one(_seq: int, got: int) -> bool:
        return got == uid

    item = parse_fetch(data, this_one).get(uid) if typ == "OK" else None
    if item is None:
        raise NotFound(f"message {uid} not found in folder {folder!r}")
    if mark_seen and "\\Seen" not in item.flags:
        typ, data = conn.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
        stored = parse_fetch(data, this_one).get(uid) if typ == "OK" else None
        flags = stored.flags if stored is not None else [*item.flags, "\\Seen"]
        item = FetchedItem(item.uid, flags, item.size, item.internaldate, item.section)
    return FetchedMessage(opened.uid_validity, item)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text) or type(exc).__name__
