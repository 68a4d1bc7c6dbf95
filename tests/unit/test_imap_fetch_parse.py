"""FETCH answers mixed with unsolicited flag news are read as what was asked for."""

from __future__ import annotations

from adbtd.adapters.imap_protocol import parse_fetch


def test_unsolicited_news_of_other_messages_is_left_out() -> None:
    data = [
        b"3 (UID 30 FLAGS (\\Seen))",  # news of a message outside the page
        b"5 (UID 50 FLAGS ())",
        b"6 (UID 60 FLAGS (\\Flagged \\Recent))",
    ]
    page = parse_fetch(data, lambda seq, _uid: 5 <= seq <= 6)
    assert sorted(page) == [50, 60]
    assert page[60].flags == ["\\Flagged"]  # \Recent is never reported


def test_two_answers_for_one_message_keep_the_body_and_the_newest_flags() -> None:
    body = b"Subject: hi\r\n\r\nbody\r\n"
    whole = (b"7 (UID 70 FLAGS () RFC822.SIZE 22 BODY[] {22}", body)
    news = b"7 (UID 70 FLAGS (\\Seen))"
    for data, flags in (([whole, b")", news], ["\\Seen"]), ([news, whole, b")"], [])):
        [item] = parse_fetch(data, lambda _seq, uid: uid == 70).values()
        assert item.section == body and item.size == 22
        assert item.flags == flags


def test_responses_without_a_uid_or_sequence_are_skipped() -> None:
    assert parse_fetch([b"8 (FLAGS (\\Seen))", b"garbage", b"* (UID 9)"]) == {}
