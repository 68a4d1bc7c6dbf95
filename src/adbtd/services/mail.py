"""Send and read mail as a mailbox: look the mailbox up on this workspace, then use the pools.

The database is read in a short transaction that is closed before any SMTP or IMAP traffic, so
a slow mail server never holds a database lock (SQLite takes its write lock at ``BEGIN``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Generic, TypeVar

from adbtd.adapters.imap_pool import ImapPool
from adbtd.adapters.imap_protocol import FetchedItem
from adbtd.adapters.pool import Login
from adbtd.adapters.smtp_pool import Envelope, SmtpPool
from adbtd.clock import utcnow
from adbtd.db.engine import Database
from adbtd.errors import Conflict, ValidationFailed
from adbtd.services.compose import prepare_message
from adbtd.services.mailboxes import ACTIVE, PASSWORD_PURPOSE, get_mailbox, mailbox_address
from adbtd.services.message_cache import MessageCache, MessageKey
from adbtd.services.mime_reader import (
    DEFAULT_LIMITS,
    AttachmentInfo,
    MimeLimits,
    ParsedMessage,
    read_message,
    read_summary,
)
from adbtd.services.secretbox import SecretBox
from adbtd.settings import Settings

DEFAULT_FOLDER = "INBOX"
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_UID = 2**32 - 1
MAX_MESSAGE_BYTES = 25 * 1024 * 1024  # a bigger message is read up to here and parsed as is
V = TypeVar("V")


class AccountCache:
    """Mailbox accounts read in the last ``ttl`` seconds, so a burst of requests reads the
    database once. ``forget`` runs on password change and deletion (``Runtime.evict_mailbox``);
    other processes' changes are seen within ``ttl``. Only successful lookups are kept."""

    def __init__(self, ttl: float = 2.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[tuple[str, str], tuple[float, MailboxAccount]] = {}
        self._lock = threading.Lock()

    def get(self, workspace_id: str, mailbox_id: str) -> MailboxAccount | None:
        with self._lock:
            entry = self._entries.get((workspace_id, mailbox_id))
        if entry is None or time.monotonic() - entry[0] >= self.ttl:
            return None
        return entry[1]

    def put(self, workspace_id: str, account: MailboxAccount) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[(workspace_id, account.id)] = (time.monotonic(), account)

    def forget(self, mailbox_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[1] == mailbox_id]:
                del self._entries[key]

    def forget_workspace(self, workspace_id: str) -> None:
        """After any change to a workspace's resources (a mailbox may have moved to another IP)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == workspace_id]:
                del self._entries[key]


@dataclass(frozen=True, slots=True)
class MailContext:
    """What the mail rules need from the runtime."""

    db: Database
    settings: Settings
    smtp: SmtpPool
    imap: ImapPool
    accounts: AccountCache | None = None
    mime_limits: MimeLimits = DEFAULT_LIMITS
    summaries: MessageCache[MessageSummary] | None = None  # for lists
    details: MessageCache[MessageDetail] | None = None  # for single fetches


@dataclass(frozen=True, slots=True)
class MailboxAccount:
    """An active mailbox as its own servers know it."""

    id: str
    email: str
    host: str
    password: str = field(repr=False)

    def login(self, port: int) -> Login:
        return Login(self.id, self.host, port, self.email, self.password)


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    accepted: list[str]
    rejected: list[str]
    response: str


@dataclass(frozen=True, slots=True)
class MessageSummary:
    uid: int
    message_id: str | None
    subject: str | None
    from_: list[str]
    to: list[str]
    cc: list[str]
    date: datetime | None
    flags: list[str]
    size: int


@dataclass(frozen=True, slots=True)
class MessageList:
    folder: str
    total: int
    uid_validity: int | None
    messages: list[MessageSummary]
    next_before: int | None


@dataclass(frozen=True, slots=True)
class MessageDetail:
    uid: int
    message_id: str | None
    subject: str | None
    from_: str | None
    to: str | None
    cc: str | None
    date: datetime | None
    text: str | None
    html: str | None
    attachments: list[AttachmentInfo]
    flags: list[str]


def load_account(ctx: MailContext, *, workspace_id: str, mailbox_id: str) -> MailboxAccount:
    """The mailbox on this workspace (else 404), active with a host and password (else 409)."""
    cached = ctx.accounts.get(workspace_id, mailbox_id) if ctx.accounts else None
    if cached is not None:
        return cached
    with ctx.db.transaction() as session:
        mailbox = get_mailbox(session, workspace_id=workspace_id, mailbox_id=mailbox_id)
        host = mailbox_address(session, mailbox)
        email, status, sealed = mailbox.email, mailbox.status, mailbox.password_encrypted
    if status != ACTIVE:
        raise Conflict(f"mailbox {email} is {status}, not active")
    if host is None or sealed is None:
        raise Conflict(f"mailbox {email} has no dedicated IP or password yet")
    password = SecretBox(ctx.settings.secret_key, PASSWORD_PURPOSE).open(sealed)
    account = MailboxAccount(mailbox_id, email, host, password)
    if ctx.accounts is not None:
        ctx.accounts.put(workspace_id, account)
    return account


def send(
    ctx: MailContext,
    *,
    workspace_id: str,
    mailbox_id: str,
    to: str | list[str],
    cc: list[str] | None,
    bcc: list[str] | None,
    subject: str,
    text: str | None,
    html: str | None,
    from_name: str | None,
    reply_to: str | None,
) -> SendResult:
    """Validate, build and submit one message from the mailbox's own address."""
    draft = prepare_message(
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        text=text,
        html=html,
        from_name=from_name,
        reply_to=reply_to,
    )
    account = load_account(ctx, workspace_id=workspace_id, mailbox_id=mailbox_id)
    message = draft.render(sender=account.email, now=utcnow())
    envelope = Envelope(message.sender, message.recipients, message.data)
    outcome = ctx.smtp.submit(account.login(ctx.settings.submission_port), envelope)
    return SendResult(
        message_id=message.message_id,
        accepted=outcome.accepted,
        rejected=list(outcome.rejected),
        response=outcome.response,
    )


def list_messages(
    ctx: MailContext,
    *,
    workspace_id: str,
    mailbox_id: str,
    folder: str = DEFAULT_FOLDER,
    limit: int = DEFAULT_LIMIT,
    before: int | None = None,
) -> MessageList:
    """Newest first; ``before`` is an exclusive UID bound; ``next_before`` pages on."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}")
    if before is not None and not 1 <= before <= MAX_UID:
        raise ValidationFailed(f"before must be a UID between 1 and {MAX_UID}")
    account = load_account(ctx, workspace_id=workspace_id, mailbox_id=mailbox_id)
    known = _Known(ctx.summaries, mailbox_id, folder) if ctx.summaries else None
    page = ctx.imap.list_page(
        account.login(ctx.settings.imap_port), folder, limit=limit, before=before, known=known
    )
    messages = []
    for item in page.items:
        summary = known.hits.get(item.uid) if known else None
        if summary is None:
            summary = _summary(item, ctx.mime_limits)
            if known and page.uid_validity is not None:
                known.keep(page.uid_validity, item.uid, summary, _summary_cost(summary))
        messages.append(_with_flags(summary, item.flags))
    next_before = messages[-1].uid if page.more and messages else None
    return MessageList(folder, page.total, page.uid_validity, messages, next_before)


def fetch_message(
    ctx: MailContext,
    *,
    workspace_id: str,
    mailbox_id: str,
    uid: int,
    folder: str = DEFAULT_FOLDER,
    mark_seen: bool = False,
) -> MessageDetail:
    """One message parsed within the MIME limits; flags change only with ``mark_seen``."""
    if not 1 <= uid <= MAX_UID:
        raise ValidationFailed(f"uid must be between 1 and {MAX_UID}")
    account = load_account(ctx, workspace_id=workspace_id, mailbox_id=mailbox_id)
    known = _Known(ctx.details, mailbox_id, folder) if ctx.details else None
    fetched = ctx.imap.fetch(
        account.login(ctx.settings.imap_port),
        folder,
        uid,
        mark_seen=mark_seen,
        max_bytes=MAX_MESSAGE_BYTES,
        known=known,
    )
    item = fetched.item
    detail = known.hits.get(uid) if known else None
    if detail is None:
        parsed = read_message(item.section, ctx.mime_limits)
        detail = _detail(item, parsed)
        # A parse cut short by its time budget may read further next time: not kept.
        if known and fetched.uid_validity is not None and not parsed.truncated:
            known.keep(fetched.uid_validity, uid, detail, _detail_cost(detail))
    return replace(detail, flags=item.flags)


@dataclass
class _Known(Generic[V]):
    """``KnownMessages`` of one mailbox folder over a cache; remembers what it answered yes
    for, so an entry evicted meanwhile cannot leave a message without its data."""

    cache: MessageCache[V]
    mailbox_id: str
    folder: str
    hits: dict[int, V] = field(default_factory=dict)

    def any(self, uid_validity: int) -> bool:
        return self.cache.holds_folder(self.mailbox_id, self.folder, uid_validity)

    def has(self, uid_validity: int, uid: int) -> bool:
        value = self.cache.get(MessageKey(self.mailbox_id, self.folder, uid_validity, uid))
        if value is not None:
            self.hits[uid] = value
        return value is not None

    def keep(self, uid_validity: int, uid: int, value: V, cost: int) -> None:
        self.cache.put(MessageKey(self.mailbox_id, self.folder, uid_validity, uid), value, cost)


def _detail(item: FetchedItem, parsed: ParsedMessage) -> MessageDetail:
    head = parsed.headers
    return MessageDetail(
        uid=item.uid,
        message_id=head.message_id,
        subject=head.subject,
        from_=", ".join(head.from_) or None,
        to=", ".join(head.to) or None,
        cc=", ".join(head.cc) or None,
        date=head.date or _internal_date(item.internaldate),
        text=parsed.text,
        html=parsed.html,
        attachments=parsed.attachments,
        flags=[],
    )


def _with_flags(summary: MessageSummary, flags: list[str]) -> MessageSummary:
    """The kept summary with the server's current flags (``replace`` is 5x slower)."""
    s = summary
    return MessageSummary(
        s.uid, s.message_id, s.subject, s.from_, s.to, s.cc, s.date, flags, s.size
    )


def _summary_cost(summary: MessageSummary) -> int:
    texts = [summary.message_id, summary.subject, *summary.from_, *summary.to, *summary.cc]
    return sum(len(t) for t in texts if t) * 2


def _detail_cost(detail: MessageDetail) -> int:
    texts = [detail.subject, detail.from_, detail.to, detail.cc, detail.text, detail.html]
    return sum(len(t) for t in texts if t) * 2 + 256 * len(detail.attachments)


def _summary(item: FetchedItem, limits: MimeLimits) -> MessageSummary:
    head = read_summary(item.section, limits)
    return MessageSummary(
        uid=item.uid,
        message_id=head.message_id,
        subject=head.subject,
        from_=head.from_,
        to=head.to,
        cc=head.cc,
        date=head.date or _internal_date(item.internaldate),
        flags=[],
        size=item.size,
    )


def _internal_date(value: str | None) -> datetime | None:
    """IMAP INTERNALDATE (``25-Nov-2026 06:07:18 +0000``), the fallback for a missing Date."""
    if not value:
        return None
    try:
        day, month, year_time = value.strip().split("-", 2)
        moment = parsedate_to_datetime(f"{day} {month} {year_time}")
    except (ValueError, TypeError, IndexError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
