"""The cache of immutable message data: bounded in bytes, least recently used out first."""

from __future__ import annotations

from adbtd.services.message_cache import ENTRY_OVERHEAD, MessageCache, MessageKey


def key(uid: int, mailbox: str = "mb_a", folder: str = "INBOX", validity: int = 7) -> MessageKey:
    return MessageKey(mailbox, folder, validity, uid)


def test_least_recently_used_goes_first_within_the_budget() -> None:
    cache: MessageCache[str] = MessageCache(3 * (ENTRY_OVERHEAD + 100))
    for uid in (1, 2, 3):
        cache.put(key(uid), f"m{uid}", 100)
    assert cache.get(key(1)) == "m1"  # now the most recent
    cache.put(key(4), "m4", 100)
    assert cache.get(key(2)) is None
    assert [cache.get(key(uid)) for uid in (1, 3, 4)] == ["m1", "m3", "m4"]
    assert cache.size_bytes == 3 * (ENTRY_OVERHEAD + 100)


def test_replacing_an_entry_does_not_count_it_twice() -> None:
    cache: MessageCache[str] = MessageCache(10_000)
    cache.put(key(1), "old", 100)
    cache.put(key(1), "new", 200)
    assert cache.get(key(1)) == "new"
    assert cache.size_bytes == ENTRY_OVERHEAD + 200


def test_an_entry_over_the_budget_is_not_kept() -> None:
    cache: MessageCache[str] = MessageCache(1000)
    cache.put(key(1), "small", 10)
    cache.put(key(2), "huge", 5000)
    assert cache.get(key(2)) is None
    assert cache.get(key(1)) == "small"


def test_folders_are_known_per_uid_validity_and_forgotten_with_their_mailbox() -> None:
    cache: MessageCache[str] = MessageCache(100_000)
    cache.put(key(1), "a", 10)
    cache.put(key(1, mailbox="mb_b"), "b", 10)
    assert cache.holds_folder("mb_a", "INBOX", 7)
    assert not cache.holds_folder("mb_a", "INBOX", 8)  # a reset folder starts cold
    assert not cache.holds_folder("mb_a", "Sent", 7)
    cache.forget_mailbox("mb_a")
    assert not cache.holds_folder("mb_a", "INBOX", 7)
    assert cache.get(key(1)) is None
    assert cache.get(key(1, mailbox="mb_b")) == "b"
    assert cache.size_bytes == ENTRY_OVERHEAD + 10


def test_eviction_keeps_the_folder_count_right() -> None:
    cache: MessageCache[str] = MessageCache(ENTRY_OVERHEAD + 10)
    cache.put(key(1), "a", 10)
    cache.put(key(2, folder="Sent"), "b", 10)
    assert not cache.holds_folder("mb_a", "INBOX", 7)
    assert cache.holds_folder("mb_a", "Sent", 7)
