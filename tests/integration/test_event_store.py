"""The PostgreSQL event store against a real database: snapshots of another schema version are left out."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from tests.conftest import wait_for
from tests.harness import change_phone, register, rows
from worker.adapters.postgres.event_store import PostgresEventStore, checked_unless_recent, make_pool
from worker.adapters.postgres.outbox import PostgresOutbox
from worker.application.bus import CommandBus, default_middleware
from worker.application.handlers import HandlerContext
from worker.application.ports import Snapshot
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


def test_every_metadata_field_of_every_event_is_read_back_as_written(database_url: str) -> None:
    """Migration 007 stores what a batch's events share once and leaves out what an event's other fields say:
    the view, the relay's outbox rows and read_all still give each event exactly as it was recorded."""
    from worker.application.ports import BatchChanges, StoredEvent
    from worker.application.unit_of_work import new_event_id

    change = {"record_id": A, "commit_number": 7, "sequence_number": 2, "transaction_key": "tk-1",
              "last_modified_ms": None, "commit_timestamp_ms": 1_700_000_000_000}
    common = {"worker_version": "9.9", "source_topic": "cdc\\topic\tx", "traceparent": None}
    metas = [
        {**common, "command": "RegisterClient", "transaction_key": "tk-1", "sequence_number": 2,
         "commit_timestamp": 1_700_000_000_000, "correlation_id": "tk-1", "causation_id": "cdc\\topic\tx:0:7",
         "source_partition": 0, "source_offset": 7, "replay_id": None},
        {**common, "command": "ChangeClientDetails", "transaction_key": "other", "sequence_number": 2.0,
         "commit_timestamp": True, "correlation_id": "tk-1", "causation_id": "elsewhere", "source_partition": 0,
         "source_offset": 8},
        {**common, "command": "MarkClientForResync", "reason": "gap ünïcode"},
        {"worker_version": "9.9", "merged_into": "001000000000009AAA"},
    ]
    payloads = [{"change": change, "n": 1.5}, {"change": {**change, "record_id": "elsewhere"}, "x": "a\\b"},
                {"change": None, "reason": "gap"}, {"deleted": True}]
    events = [StoredEvent(A, version, "ClientRegistered" if version < 3 else "ClientMarkedForResync", 1,
                          payloads[version - 1], {"event_id": new_event_id(), **meta})
              for version, meta in enumerate(metas, start=1)]
    pool = make_pool(database_url, 2, 5.0)
    store = PostgresEventStore(pool)
    try:
        store.commit(BatchChanges(events=events))
        expected = [dict(e.metadata) for e in events]
        assert [r[0] for r in rows(database_url, "SELECT metadata FROM events_with_metadata ORDER BY version")] \
            == expected
        relay_side = PostgresOutbox(database_url)
        try:
            assert relay_side.lead()
            published = relay_side.unpublished(10)
        finally:
            relay_side.close()
        assert [r.metadata for r in published] == expected and [r.payload for r in published] == payloads
        assert [dict(e.metadata) for e in store.read_all(0, 10)] == expected
        assert [e.payload for e in store.read_all(0, 10)] == payloads
        assert [e.payload for e in store.load_streams([A])[A].events] == payloads
        stored = rows(database_url, "SELECT metadata, payload FROM events ORDER BY version")
        assert "worker_version" not in stored[0][0] and "correlation_id" not in stored[0][0]
        assert "change" not in stored[0][1] and stored[1][1]["change"]["record_id"] == "elsewhere"
    finally:
        pool.close()


def _events_read(conn: Any, sql: str, params: Any) -> int:
    """Rows the plan's scans of `events` produced (EXPLAIN ANALYZE), summed over their loops."""
    plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()[0][0]["Plan"]
    read, stack = 0, [plan]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == "events":
            read += int(node["Actual Rows"]) * int(node.get("Actual Loops", 1))
        stack += node.get("Plans", [])
    return read


def test_versions_asked_for_later_are_worked_out_before_they_are_read(database_url: str) -> None:
    """`versions_later` answers as `versions_and_streams` does, and PostgreSQL runs the versions query when it is
    sent: its session waits for the client (the query done; in a pipeline it stays "active" until the Sync that
    reads the answer) before the answer is read. The connection goes back to the pool
    after `result()` and after `close()`."""
    pool = make_pool(database_url, 2, 5.0)
    store = PostgresEventStore(pool)
    B, unknown = "001000000000002AAA", "001000000000009AAA"
    try:
        batch = ClientBatch(store, snapshot_interval=100, worker_version="test")
        bus = CommandBus(middleware=default_middleware())
        for cmd in [register(A), register(B), change_phone(A, "1")]:
            bus.handle(cmd, HandlerContext(batch, StatusRule()))
        store.commit(batch.changes())
        expected = store.versions_and_streams([A, B, unknown, A], [B, unknown])

        idle = pool.get_stats()["pool_available"]
        pending, loaded = store.versions_later([A, B, unknown, A], [B, unknown])
        assert pool.get_stats()["pool_available"] == idle - 1  # held while the answer waits
        wait_for(lambda: rows(database_url, "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'ClientRead'"
                              " AND query LIKE %s", ("%unnest%LIMIT 1) v",)),
                 what="the versions query done before it is read")
        assert (pending.result(), loaded) == expected
        assert pool.get_stats()["pool_available"] == idle

        pending, _ = store.versions_later([A], [])
        pending.close()
        pending.close()
        assert pool.get_stats()["pool_available"] == idle

        # a text PostgreSQL cannot hold: the load fails as it is sent; the error (kept, with its frames) must not
        # be what gives the connection back
        with pytest.raises(psycopg.DataError) as refused:
            store.versions_later([A], ["001000000000003A\x00A"])
        assert pool.get_stats()["pool_available"] == idle and refused.value
        assert store.versions_later([A], [])[0].result() == {A: 2}  # the connection given back works
    finally:
        pool.close()


def test_loading_reads_each_streams_tail_not_its_history(database_url: str) -> None:
    """Versions and loads cost what the tail holds: a stream of 250 events with a snapshot every 100 reads its
    last 50 events (and one version probe), whatever its length; an id asked twice is answered once, an unknown
    one not at all."""
    from worker.adapters.postgres import event_store

    pool = make_pool(database_url, 2, 5.0)
    store = PostgresEventStore(pool)
    B = "001000000000002AAA"
    try:
        batch = ClientBatch(store, snapshot_interval=100, worker_version="test")
        bus = CommandBus(middleware=default_middleware())
        for cmd in [register(A), register(B)] + [change_phone(A, str(n)) for n in range(249)]:
            bus.handle(cmd, HandlerContext(batch, StatusRule()))
        store.commit(batch.changes())
        assert rows(database_url, "SELECT version FROM snapshots WHERE stream_id = %s ORDER BY 1", (A,)) \
            == [(100,), (200,)]

        unknown = "001000000000009AAA"
        versions, loaded = store.versions_and_streams([A, B, unknown, A], [A, unknown, A])
        assert versions == {A: 250, B: 1}
        assert list(loaded) == [A] and loaded[A].snapshot_version == 200
        assert [e.version for e in loaded[A].events] == list(range(201, 251))
        assert ClientBatch(store, snapshot_interval=100, worker_version="test").get(A).details.phone == "248"

        with pool.connection() as conn:
            assert _events_read(conn, event_store._VERSIONS, ([A, B],)) == 2
            load = {"ids": [A], "snapshot_schema": SNAPSHOT_SCHEMA_VERSION}
            assert _events_read(conn, event_store._LOAD, load) == 50
            # Whatever the planner believes of the table (nested loops priced out here, as statistics a few
            # seconds old made them look while ingest grew the table), each stream's tail is still read through
            # its index: not one sequential scan of every event, for known streams or for new ones.
            conn.execute("SET enable_nestloop = off")
            assert _events_read(conn, event_store._LOAD, load) == 50
            new = {"ids": [unknown, "001000000000008AAA"], "snapshot_schema": SNAPSHOT_SCHEMA_VERSION}
            assert _events_read(conn, event_store._LOAD, new) == 0
    finally:
        pool.close()


def test_a_commit_sent_is_done_by_the_server_before_its_answer_is_read(database_url: str) -> None:
    """`begin_commit` sends the events, the rest and the COMMIT in one pipeline: PostgreSQL commits as the
    statements arrive (the relay is notified then), so the batch is visible to others before `wait()` reads the
    answer, and its connection goes back to the pool only after `wait()`. A commit refused raises (from `wait()`
    at the latest), nothing of it is stored, and its connection goes back."""
    # one connection: a pool that may grow opens its second one in the background, at a time of its own (the
    # count of available connections was then 0 or 1 while the commit was pending: a flaky test)
    pool = make_pool(database_url, 1, 5.0)
    store = PostgresEventStore(pool)
    try:
        batch = ClientBatch(store, snapshot_interval=100, worker_version="test")
        bus = CommandBus(middleware=default_middleware())
        for cmd in (register(A), change_phone(A, "1")):
            bus.handle(cmd, HandlerContext(batch, StatusRule()))
        idle = pool.get_stats().get("pool_available", 0)
        pending = store.begin_commit(batch.changes())
        wait_for(lambda: rows(database_url, "SELECT count(*) FROM events") == [(2,)], what="the events visible")
        assert rows(database_url, "SELECT count(*) FROM outbox") == [(2,)]
        assert pool.get_stats().get("pool_available", 0) == idle - 1  # held until the answer is read
        pending.wait()
        assert pool.get_stats().get("pool_available", 0) == idle

        # a snapshot PostgreSQL refuses (NaN is no JSON): refused at the end, in the pipeline
        later = ClientBatch(store, snapshot_interval=100, worker_version="test")
        bus.handle(change_phone(A, "2"), HandlerContext(later, StatusRule()))
        later.changes().snapshots.append(Snapshot(A, 3, SNAPSHOT_SCHEMA_VERSION, {"x": float("nan")}))
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            # from `wait()`, or from `begin_commit` when the refusal is back before the last statement is sent
            store.begin_commit(later.changes()).wait()
        assert rows(database_url, "SELECT count(*) FROM events") == [(2,)]
        assert pool.get_stats().get("pool_available", 0) == idle  # given back, its transaction rolled back
    finally:
        pool.close()


def test_the_pool_checks_a_connection_by_a_round_trip_unless_it_was_handed_out_within_the_window(
        database_url: str) -> None:
    """A connection handed out again within the window is not checked: one its server ended fails its first
    statement (a transient fault the roles retry) and the pool drops it. Past the window the check finds it dead
    and the pool hands out a new one."""
    now = [100.0]
    pool = ConnectionPool(database_url, min_size=1, max_size=1, open=True, reconnect_timeout=0, timeout=10,
                          check=checked_unless_recent(1.0, clock=lambda: now[0]))
    try:
        with pool.connection() as conn:
            first = conn.info.backend_pid
        rows(database_url, "SELECT pg_terminate_backend(%s, 5000)", (first,))

        now[0] += 0.5  # within the window: handed out as it is
        with pytest.raises(psycopg.OperationalError), pool.connection() as conn:
            assert conn.info.backend_pid == first
            conn.execute("SELECT 1")
        with pool.connection() as conn:  # the broken one was dropped
            second = conn.info.backend_pid
            assert second != first and conn.execute("SELECT 1").fetchone() == (1,)
        rows(database_url, "SELECT pg_terminate_backend(%s, 5000)", (second,))

        now[0] += 1.0  # past the window: checked, found dead, replaced before it is handed out
        with pool.connection() as conn:
            assert conn.info.backend_pid not in (first, second)
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()
