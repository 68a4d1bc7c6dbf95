"""The API guard's per-request read: an API key by its hash, without the ORM.

Every API request pays this lookup. Through an ORM session it cost ~400 µs on the 2-core
machine (session, ``BEGIN``, compile-cache lookup, row objects); one prepared statement on a
pooled driver connection costs ~20 µs, which on SQLite is cheap enough to run on the event loop
and saves the request a worker-thread hop. On PostgreSQL it is network I/O, so ``local`` is
false and the caller runs it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from adbtd.db.engine import Database

_QUERY = (
    "SELECT id, name, workspace_id, revoked_at, last_used_at FROM api_keys WHERE token_sha256 = {}"
)


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    name: str
    workspace_id: str
    revoked: bool
    last_used_at: datetime | None


class KeyLookup:
    """Finds a key row by ``token_sha256`` on the database's read engine."""

    def __init__(self, db: Database) -> None:
        self._engine = db.read_engine
        self.local = db.is_sqlite  # a local file read: no network wait
        marker = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        self._sql = _QUERY.format(marker)

    def find(self, token_sha256: str) -> KeyRow | None:
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(self._sql, (token_sha256,))
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool, which rolls back the driver's transaction
        if row is None:
            return None
        key_id, name, workspace_id, revoked_at, last_used_at = row
        return KeyRow(
            id=str(key_id),
            name=str(name),
            workspace_id=str(workspace_id),
            revoked=revoked_at is not None,
            last_used_at=_utc(last_used_at),
        )


def _utc(value: datetime | str | None) -> datetime | None:
    """Stored naive UTC: a ``datetime`` from PostgreSQL, ISO text from SQLite."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC)
