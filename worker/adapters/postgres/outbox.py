"""The outbox, read by the relay: unpublished rows in position order; one active relay (advisory lock).

The lock lives as long as the relay's session, so a relay that freezes or is cut off must lose the session
soon: TCP keepalives and tcp_user_timeout on both ends, and the server ends a session idle for that long."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from worker.adapters.postgres.compact import expand_payload, full_metadata

_RELAY_LOCK = 7_402_113_002
# An ingest transaction that appended events NOTIFYs this channel when it commits; the leading relay LISTENs on
# its session and wakes at once instead of on a poll timer (the timer stays as the fallback).
OUTBOX_CHANNEL = "worker_outbox"
# A row refers to its event (migration 008): the event is read through the unique index on global_position (one
# lookup per row, within the LIMIT) and made whole here with its batch's shared metadata (migration 007; events
# stored before it have no batch and are whole already), read as text and parsed once per batch (a page's rows
# mostly share a few batches). Held-back streams are left out on the outbox row, before their events are looked
# up. A row whose event is not found comes back with NULLs (the relay parks its stream).
_UNPUBLISHED = (
    "SELECT o.position, o.event_position, o.stream_id, o.created_at, e.event_id::text, e.version, e.event_type,"
    " e.schema_version, e.payload, e.metadata, e.batch_id, b.metadata::text"
    " FROM outbox o LEFT JOIN events e ON e.global_position = o.event_position"
    " LEFT JOIN event_batches b ON b.id = e.batch_id"
    " WHERE o.stream_id <> ALL(%s) ORDER BY o.position LIMIT %s"
)
# Published rows are deleted, not marked: the outbox is a queue (the events table is the record), so it stays
# as small as the backlog instead of growing by every event and every UPDATE's dead tuple.
_DELETE = "DELETE FROM outbox WHERE position = ANY(%s)"
_BACKLOG = "SELECT count(*), min(created_at) FROM outbox"
_TOUCH = "SELECT 1"
_SERVER_TIMEOUTS = (
    "SELECT set_config('tcp_keepalives_idle', %(idle)s, false), set_config('tcp_keepalives_interval', %(every)s,"
    " false), set_config('tcp_keepalives_count', %(count)s, false), set_config('tcp_user_timeout', %(ms)s, false)"
)
_IDLE_SESSION_TIMEOUT = "SELECT set_config('idle_session_timeout', %s, false)"  # PostgreSQL 14+
_KEEPALIVE_COUNT = 4


class LeadLost(psycopg.OperationalError):
    """The session that held the relay lock ended (and the lock with it): start over from `lead()`."""


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
    # The event's global position when the row's event is not in the events table (it never should be: events are
    # never deleted); the event's fields are then empty and the relay parks the stream instead of publishing.
    missing_event: int | None = None


class PostgresOutbox:
    """Holds its own connection: the advisory lock lives as long as the session. ``dead_peer_timeout_s``: how
    long a frozen or unreachable peer may keep it (either end gives up on the session after about that long)."""

    def __init__(self, dsn: str, connect_timeout_s: float = 5.0, dead_peer_timeout_s: float = 60.0) -> None:
        self._dsn = dsn
        self._timeout = max(1, int(connect_timeout_s))
        self._dead_peer_s = max(1.0, dead_peer_timeout_s)
        self._conn: psycopg.Connection[Any] | None = None
        self._leading = False

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._leading = False  # a new session holds no lock
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> psycopg.Connection[Any]:
        seconds = self._dead_peer_s
        idle, every = max(1, int(seconds / 4)), max(1, int(seconds / 8))
        # the relay's end: a server that stops answering is given up after `seconds`
        conn = psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=self._timeout, keepalives=1, keepalives_idle=idle,
            keepalives_interval=every, keepalives_count=_KEEPALIVE_COUNT, tcp_user_timeout=int(seconds * 1000),
        )
        try:
            # the server's end: a relay host that vanishes, or a session left idle (a frozen relay queries every
            # step, so only a frozen or cut-off one is idle that long), ends the session and frees the lock
            conn.execute(_SERVER_TIMEOUTS, {"idle": str(idle), "every": str(every), "count": str(_KEEPALIVE_COUNT),
                                            "ms": str(int(seconds * 1000))})
            if conn.info.server_version >= 140000:
                conn.execute(_IDLE_SESSION_TIMEOUT, (str(int(seconds * 1000)),))
        except BaseException:
            conn.close()
            raise
        return conn

    def _session(self) -> psycopg.Connection[Any]:
        """The session that took the lock; if it ended, so did the lock (another relay may lead by now)."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self._leading = False
            raise LeadLost("the relay's database session ended, and its advisory lock with it")
        return conn

    def lead(self) -> bool:
        """Be the active relay: take the lock unless this session holds it already (lost on reconnect)."""
        conn = self._connection()
        if not self._leading:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_RELAY_LOCK,)).fetchone()
            self._leading = bool(row and row[0])
            if self._leading:
                conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        return self._leading

    def wait_for_rows(self, timeout_s: float) -> bool:
        """Until an ingest transaction with events commits (its NOTIFY) or ``timeout_s`` passed; True when woken.
        A standby, or a session that ended, just waits (the next `lead()` or query reports what happened)."""
        conn = self._conn
        if not self._leading or conn is None or conn.closed or conn.broken:
            time.sleep(timeout_s)
            return False
        try:
            return any(True for _ in conn.notifies(timeout=timeout_s, stop_after=1))
        except psycopg.Error:
            return False

    def unpublished(self, limit: int, held_back: Sequence[str] = ()) -> list[OutboxRow]:
        """The oldest unpublished rows, leaving out the streams in ``held_back``."""
        rows = self._session().execute(_UNPUBLISHED, (list(held_back), limit)).fetchall()
        out = []
        batches: dict[int, Any] = {}
        for position, event_position, stream_id, created, event_id, version, event_type, schema, stored, own, \
                batch_id, shared_text in rows:
            if event_id is None:
                out.append(OutboxRow(position, "", stream_id, 0, "", 0, {}, {}, created, missing_event=event_position))
                continue
            shared = None
            if shared_text is not None:  # full_metadata copies from it: one parsed dict serves the batch's rows
                shared = batches.get(batch_id)
                if shared is None:
                    shared = batches[batch_id] = json.loads(shared_text)
            payload = expand_payload(stream_id, stored)
            metadata = full_metadata(shared, own, event_id, event_type, payload)
            out.append(OutboxRow(position, event_id, stream_id, version, event_type, schema, payload, metadata,
                                 created))
        return out

    def delete_published(self, positions: Sequence[int]) -> None:
        """Delete the rows the broker acknowledged."""
        if positions:
            self._session().execute(_DELETE, (list(positions),))

    def touch(self) -> None:
        """Show the server the session is alive (while the relay waits for the broker)."""
        self._session().execute(_TOUCH)

    def backlog(self) -> tuple[int, Any]:
        row = self._connection().execute(_BACKLOG).fetchone()
        return (row[0], row[1]) if row else (0, None)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
