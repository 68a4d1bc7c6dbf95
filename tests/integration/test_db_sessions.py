"""Read snapshots: they run beside a writer and refuse to write (SQLite), on both engines."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from adbtd.db.models import Workspace
from adbtd.runtime import Runtime
from adbtd.services import workspaces


def test_read_snapshot_does_not_wait_for_a_writer(runtime: Runtime) -> None:
    with runtime.db.transaction() as session:
        workspaces.create_workspace(session, slug="acme", name="Acme")
    writer_holds_lock, reader_done = threading.Event(), threading.Event()

    def writer() -> None:
        with runtime.db.transaction() as session:
            workspaces.create_workspace(session, slug="other", name="Other")
            session.flush()
            writer_holds_lock.set()
            reader_done.wait(timeout=10)

    thread = threading.Thread(target=writer)
    thread.start()
    assert writer_holds_lock.wait(timeout=10)
    with runtime.db.read() as session:
        slugs = session.scalars(select(Workspace.slug)).all()
    reader_done.set()
    thread.join(timeout=10)
    assert slugs == ["acme"]  # a snapshot: the writer had not committed


def test_read_snapshot_refuses_writes_on_sqlite(runtime: Runtime) -> None:
    if not runtime.db.is_sqlite:  # PostgreSQL needs no guard: reads never block writers
        assert runtime.db.read_engine is runtime.db.engine
        return
    with pytest.raises(OperationalError, match="readonly"), runtime.db.read() as session:
        session.execute(
            text(
                "INSERT INTO node_revision (id, revision, changed_at) "
                "VALUES (2, 0, '2026-01-01 00:00:00')"
            )
        )
