"""What never changes about a message once it has a UID, kept so a repeat read skips the work.

IMAP guarantees that a UID names the same message for as long as the folder's UIDVALIDITY
holds, and a message's headers, body, size and internal date never change; only its flags do.
So a parsed summary (for lists) or a parsed message (for fetches) keyed on (mailbox, folder,
UIDVALIDITY, UID) stays true, and a warm read asks the server for flags only: less to transfer
and nothing to parse. Flags always come from the server.

The cache is per process, bounded by an estimate of its size in bytes (least recently used
goes first), and a mailbox's entries are dropped when it is deleted (``Runtime.evict_mailbox``);
mailbox ids are never reused, so nothing cached can reach another mailbox.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from typing import Generic, NamedTuple, TypeVar

V = TypeVar("V")
ENTRY_OVERHEAD = 512  # bytes an entry costs beyond its strings (objects, key, list links)


class MessageKey(NamedTuple):
    mailbox_id: str
    folder: str
    uid_validity: int
    uid: int


class MessageCache(Generic[V]):
    """A thread-safe LRU map ``MessageKey → V`` within ``max_bytes`` (0 disables it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[MessageKey, tuple[V, int]] = OrderedDict()
        self._folders: Counter[tuple[str, str, int]] = Counter()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: MessageKey) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def holds_folder(self, mailbox_id: str, folder: str, uid_validity: int) -> bool:
        """Whether anything of this folder is kept (else a read fetches everything at once)."""
        with self._lock:
            return self._folders[(mailbox_id, folder, uid_validity)] > 0

    def put(self, key: MessageKey, value: V, cost: int) -> None:
        """Keep ``value``; ``cost`` estimates its bytes (an entry over the budget is not kept)."""
        cost += ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        with self._lock:
            self._drop(key)
            self._entries[key] = (value, cost)
            self._folders[(key.mailbox_id, key.folder, key.uid_validity)] += 1
            self._bytes += cost
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def forget_mailbox(self, mailbox_id: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k.mailbox_id == mailbox_id]:
                self._drop(key)

    def _drop(self, key: MessageKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry[1]
        folder = (key.mailbox_id, key.folder, key.uid_validity)
        self._folders[folder] -= 1
        if self._folders[folder] <= 0:
            del self._folders[folder]
