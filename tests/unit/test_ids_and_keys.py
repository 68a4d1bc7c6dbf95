"""Identifiers and API key shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from adbtd.clock import iso_ms
from adbtd.ids import looks_like_id, new_id
from adbtd.services.api_keys import TOKEN_PREFIX, hash_token, is_well_formed
from adbtd.services.secretbox import SecretBox


def test_ids_are_prefixed_random_and_recognised() -> None:
    ids = {new_id("ws") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(looks_like_id(i, "ws") for i in ids)
    assert not looks_like_id(new_id("mb"), "ws")
    assert not looks_like_id("ws_../../etc", "ws")


def test_token_shape_and_hash() -> None:
    good = TOKEN_PREFIX + "A" * 43
    assert is_well_formed(good)
    assert not is_well_formed(TOKEN_PREFIX + "A" * 42)
    assert not is_well_formed("adbtd_test_" + "A" * 43)
    assert not is_well_formed(TOKEN_PREFIX + "A" * 42 + "!")
    assert hash_token(good) != good and len(hash_token(good)) == 64


def test_timestamps_have_milliseconds_and_z() -> None:
    moment = datetime(2026, 5, 3, 9, 21, 14, 221999, tzinfo=UTC)
    assert iso_ms(moment) == "2026-05-03T09:21:14.221Z"
    assert iso_ms(None) is None
    paris = timezone(timedelta(hours=2))
    assert iso_ms(datetime(2026, 5, 3, 11, 21, 14, tzinfo=paris)) == "2026-05-03T09:21:14.000Z"
    assert iso_ms(datetime(2026, 5, 3, 9, 21, 14)) == "2026-05-03T09:21:14.000Z"  # naive = UTC
    assert iso_ms(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000Z"


def test_secret_box_round_trip_and_key_separation() -> None:
    box = SecretBox("k" * 40, "mailbox-password")
    sealed = box.seal("hunter2 ünïcode")
    assert "hunter2" not in sealed
    assert box.open(sealed) == "hunter2 ünïcode"
    other = SecretBox("k" * 40, "dkim-key")
    with pytest.raises(ValueError, match="cannot be opened"):
        other.open(sealed)
