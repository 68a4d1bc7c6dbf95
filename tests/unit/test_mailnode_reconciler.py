"""A failed reconcile round leaves the previous files in force and is retried."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from adbtd.mailnode.apply import Daemon
from adbtd.mailnode.daemons import DaemonError
from adbtd.mailnode.reconciler import Reconciler
from adbtd.mailnode.state import NodeConfig, NodeMailbox, NodeState

pytestmark = pytest.mark.skipif(shutil.which("postmap") is None, reason="needs postmap")

HASH = "{BLF-CRYPT}$2b$04$abcdefghijklmnopqrstuu5Hf8C3y3kq3m3wzH4pW4E1b0o7cQJ1e"


def test_failed_round_keeps_previous_files_and_recovers(tmp_path: Path) -> None:
    config = NodeConfig(
        base_dir=tmp_path, hostname="mail.r.test", submission_port=587, imap_port=993, smtp_port=25
    )
    outcomes: list[NodeState | Exception] = [
        NodeState(),
        RuntimeError("database down"),
        NodeState(ips=("127.0.1.9",)),
    ]

    def provider() -> NodeState:
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    reconciler = Reconciler(provider, config)
    reconciler.reconcile_once()
    before = (tmp_path / "postfix/master.cf").read_text()
    reconciler.start(interval=3600)
    try:
        reconciler.notify()
        deadline = time.monotonic() + 2
        while reconciler.last_error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(reconciler.last_error, RuntimeError)
        assert (tmp_path / "postfix/master.cf").read_text() == before
        reconciler.notify()
        while reconciler.last_error is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reconciler.last_error is None
        assert "127.0.1.9:25 inet" in (tmp_path / "postfix/master.cf").read_text()
    finally:
        reconciler.stop()


def test_mail_is_removed_only_after_a_successful_round(tmp_path: Path) -> None:
    config = NodeConfig(
        base_dir=tmp_path, hostname="mail.r.test", submission_port=587, imap_port=993, smtp_port=25
    )
    home = tmp_path / "mail" / "a.test" / "ann" / "Maildir"
    home.mkdir(parents=True)
    kept = NodeState(ips=("127.0.1.9",), mailboxes=(NodeMailbox("ann@a.test", HASH, "127.0.1.9"),))
    outcomes: list[NodeState | Exception] = [kept, RuntimeError("database down"), NodeState()]
    evicted: list[set[str]] = []

    def provider() -> NodeState:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    reconciler = Reconciler(provider, config, evictor=lambda users: evicted.append(set(users)))
    assert reconciler.reconcile_once().removed_mail == ()
    with pytest.raises(RuntimeError):
        reconciler.reconcile_once()
    assert home.is_dir() and evicted == []
    assert reconciler.reconcile_once().removed_mail == ("a.test/ann",)
    assert evicted == [{"ann@a.test"}]
    assert not (tmp_path / "mail" / "a.test").exists()


def test_a_failed_reload_is_retried_though_the_files_are_already_written(tmp_path: Path) -> None:
    config = NodeConfig(
        base_dir=tmp_path, hostname="mail.r.test", submission_port=587, imap_port=993, smtp_port=25
    )
    states = [NodeState(), NodeState(ips=("127.0.1.9",))]
    asked: list[set[Daemon]] = []
    failures: list[DaemonError] = []

    def reloader(daemons: Iterable[Daemon]) -> set[Daemon]:
        asked.append(set(daemons))
        if failures:
            raise failures.pop()
        return set(daemons)

    reconciler = Reconciler(lambda: states[0], config, reloader=reloader)
    reconciler.reconcile_once()
    asked.clear()
    states.pop(0)
    failures.append(DaemonError("postfix did not confirm the reload"))
    with pytest.raises(DaemonError):
        reconciler.reconcile_once()
    [first] = asked
    assert Daemon.POSTFIX in first  # a new listener
    changes = reconciler.reconcile_once()
    assert not changes.written  # nothing left to write: the files went in with the failed round
    assert asked == [first, first]
    reconciler.reconcile_once()
    assert len(asked) == 2  # reloaded once it succeeded, not again
