"""The process's shared objects, built once from settings and handed to the API, CLI and workers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from adbtd.adapters.imap_pool import ImapPool
from adbtd.adapters.pool import ClientTls
from adbtd.adapters.smtp_pool import SmtpPool
from adbtd.db.engine import Database
from adbtd.services.mail import AccountCache, MessageDetail, MessageSummary
from adbtd.services.message_cache import MessageCache
from adbtd.services.ratelimit import BucketStore, MemoryBucketStore
from adbtd.settings import Settings


def make_bucket_store(spec: str) -> BucketStore:
    """``memory`` for one process; a ``redis://`` URL when several API processes share limits."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from adbtd.adapters.redis_buckets import RedisBucketStore

        return RedisBucketStore(spec)
    if spec != "memory":
        raise ValueError(f"unknown ADBTD_RATE_LIMIT_STORE {spec!r}")
    return MemoryBucketStore()


def mail_client_tls(settings: Settings) -> ClientTls:
    """The API trusts exactly its node's certificate: the operator's or the self-signed one."""
    from adbtd.mailnode.node import build_node_config
    from adbtd.mailnode.tls import tls_paths

    return ClientTls("pinned", tls_paths(build_node_config(settings))[0])


def _nothing() -> None:
    return None


def _ignore(_workspace_id: str) -> None:
    return None


@dataclass
class Runtime:
    """Settings, database and stores of one process.

    ``node_changed`` wakes the in-process reconciler; ``order_placed`` wakes the order worker.
    """

    settings: Settings
    db: Database
    buckets: BucketStore = field(default_factory=MemoryBucketStore)
    node_changed: Callable[[], None] = _nothing
    order_placed: Callable[[], None] = _nothing
    quantities_changed: Callable[[str], None] = _ignore
    smtp_pool: SmtpPool = field(init=False)
    imap_pool: ImapPool = field(init=False)
    mail_accounts: AccountCache = field(init=False)
    message_summaries: MessageCache[MessageSummary] | None = field(init=False)
    message_details: MessageCache[MessageDetail] | None = field(init=False)

    def __post_init__(self) -> None:
        tls = mail_client_tls(self.settings)
        self.smtp_pool = SmtpPool(tls=tls, local_hostname=self.settings.mail_hostname)
        self.imap_pool = ImapPool(tls=tls)
        self.mail_accounts = AccountCache()
        budget = self.settings.message_cache_mb * 1024 * 1024
        # A quarter for list summaries (small, many), the rest for whole parsed messages.
        self.message_summaries = MessageCache(budget // 4) if budget else None
        self.message_details = MessageCache(budget - budget // 4) if budget else None

    def resources_changed(
        self, workspace_id: str, *, removed_mailboxes: Iterable[str] = ()
    ) -> None:
        """After a committed change to a workspace's domains, IPs or mailboxes: wake the node,
        push billing quantities, and drop what this process holds for removed mailboxes."""
        for mailbox_id in removed_mailboxes:
            self.evict_mailbox(mailbox_id)
        self.mail_accounts.forget_workspace(workspace_id)  # e.g. mailboxes moved to another IP
        self.node_changed()
        self.quantities_changed(workspace_id)

    def evict_mailbox(self, mailbox_id: str) -> None:
        """Forget a mailbox's cached login and close its pooled SMTP/IMAP connections; call
        after a password change or a deletion (of the mailbox or its domain)."""
        self.mail_accounts.forget(mailbox_id)
        for cache in (self.message_summaries, self.message_details):
            if cache is not None:
                cache.forget_mailbox(mailbox_id)
        self.smtp_pool.evict(mailbox_id)
        self.imap_pool.evict(mailbox_id)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            settings=settings,
            db=Database(settings.resolved_database_url),
            buckets=make_bucket_store(settings.rate_limit_store),
        )

    def close(self) -> None:
        self.smtp_pool.close()
        self.imap_pool.close()
        self.db.dispose()
