"""The PostgreSQL event store against a real database: snapshots of another schema version are left out."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from tests.harness import change_phone, register, rows
from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
from worker.application.bus import CommandBus, default_middleware
from worker.application.handlers import HandlerContext
from worker.application.unit_of_work import SNAPSHOT_SCHEMA_VERSION, ClientBatch
from worker.domain import StatusRule

pytestmark = pytest.mark.integration
A = "001000000000001AAA"


def test_a_snapshot_of_another_schema_version_is_discarded_and_the_stream_replayed(database_url: str) -> None:
    pool = make_pool(database_url, 2, 5.0)
    store = PostgresEventStore(pool)
    try:
        batch = ClientBatch(store, snapshot_interval=3, worker_version="test")
        bus = CommandBus(middleware=default_middleware())
        for cmd in [register(A)] + [change_phone(A, str(n)) for n in range(4)]:
            bus.handle(cmd, HandlerContext(batch, StatusRule()))
        store.commit(batch.changes())
        assert rows(database_url, "SELECT version, schema_version FROM snapshots") == [(3, SNAPSHOT_SCHEMA_VERSION)]
        assert store.load_streams([A])[A].snapshot_schema_version == SNAPSHOT_SCHEMA_VERSION

        # a snapshot written by a worker of another snapshot format, later than the current one
        with pool.connection() as conn:
            conn.execute("INSERT INTO snapshots (stream_id, version, schema_version, state) VALUES (%s, 5, %s, %s)",
                         (A, SNAPSHOT_SCHEMA_VERSION + 1, Jsonb({"unreadable": True})))
        stream = store.load_streams([A])[A]
        assert (stream.snapshot_version, stream.snapshot_schema_version) == (3, SNAPSHOT_SCHEMA_VERSION)
        assert [e.version for e in stream.events] == [4, 5]

        only_old = PostgresEventStore(pool, snapshot_schema_version=SNAPSHOT_SCHEMA_VERSION + 7)
        stream = only_old.load_streams([A])[A]
        assert stream.snapshot is None and [e.version for e in stream.events] == [1, 2, 3, 4, 5]
        reloaded = ClientBatch(only_old, snapshot_interval=100, worker_version="test")
        assert reloaded.get(A).version == 5 and reloaded.get(A).details.phone == "3"
    finally:
        pool.close()
