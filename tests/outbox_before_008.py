"""How the outbox was written and read before migration 008, when each row was a copy of its event: the
statements of those versions, kept to test that 008 leaves a backlog publishable and the relay's rows as they
were, and to measure what it saves (`tests/benchmarks/outbox_footprint.py`).

Before 007 (a database migrated `up_to=6`): events whole (payload and metadata jsonb, no batch), their outbox rows
copied by event id. 007: events compact, outbox rows copied as stored, the relay joining their batch's row."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from unittest import mock

import psycopg
from psycopg.types.json import Jsonb

from worker.adapters.postgres import event_store
from worker.adapters.postgres.compact import expand_payload, full_metadata
from worker.adapters.postgres.outbox import OutboxRow
from worker.application.ports import StoredEvent

_INSERT_EVENT_006 = (
    "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, payload, metadata)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
FILL_OUTBOX_006 = (
    "INSERT INTO outbox (stream_id, version, event_id, event_type, schema_version, payload, metadata)"
    " SELECT stream_id, version, event_id, event_type, schema_version, payload, metadata FROM events"
    " WHERE event_id = ANY(%s::uuid[]) ORDER BY global_position"
)
FILL_OUTBOX_007 = (
    "INSERT INTO outbox (stream_id, version, event_id, event_type, schema_version, payload, metadata, batch_id)"
    " SELECT stream_id, version, event_id, event_type, schema_version, payload, metadata, batch_id FROM events"
    " WHERE batch_id = (SELECT currval(pg_get_serial_sequence('event_batches', 'id'))) ORDER BY global_position"
)  # (the batch id was a parameter then: the batch row was written, and its id read, first)
UNPUBLISHED_007 = (
    "SELECT o.position, o.event_id::text, o.stream_id, o.version, o.event_type, o.schema_version, o.payload,"
    " o.metadata, o.created_at, b.metadata FROM outbox o LEFT JOIN event_batches b ON b.id = o.batch_id"
    " WHERE o.stream_id <> ALL(%s) ORDER BY o.position LIMIT %s"
)


def write_as_006(dsn: str, events: Sequence[StoredEvent]) -> None:
    """Events and their outbox rows in one transaction, as the worker wrote them before migration 007."""
    with psycopg.connect(dsn) as conn, conn.transaction():
        for e in events:
            conn.execute(_INSERT_EVENT_006, (e.stream_id, e.version, e.metadata["event_id"], e.event_type,
                                             e.schema_version, Jsonb(e.payload), Jsonb(dict(e.metadata))))
        conn.execute(FILL_OUTBOX_006, ([e.metadata["event_id"] for e in events],))


@contextmanager
def filling_the_outbox_as_007() -> Iterator[None]:
    """`PostgresEventStore.commit` fills the outbox as it did under migration 007 (a copy of each event)."""
    with mock.patch.object(event_store, "_FILL_OUTBOX", FILL_OUTBOX_007):
        yield


def unpublished_007(dsn: str, limit: int = 10_000, held_back: Sequence[str] = ()) -> list[OutboxRow]:
    """What the relay read from the outbox under migration 007 (`PostgresOutbox.unpublished` of that version)."""
    with psycopg.connect(dsn) as conn:
        rows: list[Any] = conn.execute(UNPUBLISHED_007, (list(held_back), limit)).fetchall()
    out = []
    for position, event_id, stream_id, version, event_type, schema, stored, own, created, shared in rows:
        payload = expand_payload(stream_id, stored)
        metadata = full_metadata(shared, own, event_id, event_type, payload)
        out.append(OutboxRow(position, event_id, stream_id, version, event_type, schema, payload, metadata,
                             created))
    return out
