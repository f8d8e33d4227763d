"""The outbox, read by the relay: unpublished rows in position order, deleted once published; one active relay
(advisory lock)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

_RELAY_LOCK = 7_402_113_002
_UNPUBLISHED = (
    "SELECT position, event_id::text, stream_id, version, event_type, schema_version, payload, metadata,"
    " created_at FROM outbox ORDER BY position LIMIT %s"
)
# Published rows are deleted, not marked: the outbox is a queue (the events table is the record), so it stays
# as small as the backlog instead of growing by every event and every UPDATE's dead tuple.
_DELETE = "DELETE FROM outbox WHERE position = ANY(%s)"
_BACKLOG = "SELECT count(*), min(created_at) FROM outbox"


@dataclass(frozen=True)
class OutboxRow:
    position: int
    event_id: str
    stream_id: str
    version: int
    event_type: str
    schema_version: int
    payload: dict[str, Any]
    metadata: dict[str, Any]
    created_at: Any


class PostgresOutbox:
    """Holds its own connection: the advisory lock lives as long as the session."""

    def __init__(self, dsn: str, connect_timeout_s: float = 5.0) -> None:
        self._dsn = dsn
        self._timeout = max(1, int(connect_timeout_s))
        self._conn: psycopg.Connection[Any] | None = None
        self._leading = False

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._leading = False  # a new session holds no lock
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._timeout)
        return self._conn

    def lead(self) -> bool:
        """Be the active relay: take the lock unless this session holds it already (lost on reconnect)."""
        conn = self._connection()
        if not self._leading:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_RELAY_LOCK,)).fetchone()
            self._leading = bool(row and row[0])
        return self._leading

    def unpublished(self, limit: int) -> list[OutboxRow]:
        rows = self._connection().execute(_UNPUBLISHED, (limit,)).fetchall()
        return [OutboxRow(*row) for row in rows]

    def delete_published(self, positions: Sequence[int]) -> None:
        """Delete the rows the broker acknowledged."""
        if positions:
            self._connection().execute(_DELETE, (list(positions),))

    def backlog(self) -> tuple[int, Any]:
        row = self._connection().execute(_BACKLOG).fetchone()
        return (row[0], row[1]) if row else (0, None)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
