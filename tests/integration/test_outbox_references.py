"""Migration 008, the outbox of references, against the real database (and broker): a backlog written by earlier
versions stays publishable, whole and in order; the relay reads the same rows as before, for compact events and
for events stored before migration 007; a row whose event is missing parks its stream; a page of the outbox is
read by index lookups into the events, not a scan of them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from tests.conftest import wait_for
from tests.fakes.event_store import MemoryStore
from tests.fakes.kafka import FakeProducer
from tests.harness import change_phone, consume_all, create_worker_topics, register, rows, running, settings_for
from tests.outbox_before_008 import filling_the_outbox_as_007, unpublished_007, write_as_006
from worker import bootstrap
from worker.adapters.avro import ClientEventCodec
from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
from worker.adapters.postgres.migrate import migrate
from worker.adapters.postgres.outbox import _UNPUBLISHED, OutboxRow, PostgresOutbox
from worker.application.bus import CommandBus
from worker.application.handlers import HandlerContext
from worker.application.ports import BatchChanges, StoredEvent
from worker.application.unit_of_work import ClientBatch, new_event_id
from worker.config import RetrySettings
from worker.domain import StatusRule
from worker.roles.relay import OutboxRelay, RelayHooks, RelaySettings, event_headers
from worker.roles.runtime import IdleClock, RoleControl, Stopper

pytestmark = pytest.mark.integration
A, B, C = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    """This module's tests take their database through the migrations themselves: it starts empty."""
    return new_database()


def decided(store: Any, commands: Sequence[Any]) -> ClientBatch:
    batch = ClientBatch(store, snapshot_interval=100, worker_version="test")
    bus = CommandBus()
    for command in commands:
        bus.handle(command, HandlerContext(batch, StatusRule()))
    return batch


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresEventStore]:
    pool = make_pool(database_url, 2, 5.0)
    yield PostgresEventStore(pool)
    pool.close()


def write_both_eras(dsn: str, store: PostgresEventStore) -> list[StoredEvent]:
    """A backlog as a worker before 007 wrote it (whole events), then as one under 007 (compact events, their
    rows copied into the outbox); return the events in the order they were appended."""
    migrate(dsn, up_to=6)
    old = decided(MemoryStore(), [register(A), change_phone(A, "1"), register(B)]).changes().events
    write_as_006(dsn, old)
    migrate(dsn, up_to=7)
    batch = decided(store, [change_phone(A, "2"), register(C), change_phone(B, "3"), change_phone(A, "4")])
    compact = batch.changes().events
    with filling_the_outbox_as_007():
        batch.commit()
    return [*old, *compact]


def outbox_columns(dsn: str) -> list[str]:
    return [r[0] for r in rows(dsn, "SELECT column_name FROM information_schema.columns WHERE table_name = 'outbox'"
                                    " ORDER BY ordinal_position")]


def relay_rows(dsn: str, limit: int = 100) -> list[OutboxRow]:
    outbox = PostgresOutbox(dsn)
    try:
        assert outbox.lead()
        return outbox.unpublished(limit)
    finally:
        outbox.close()


def as_recorded(rows_: Sequence[OutboxRow]) -> list[tuple[Any, ...]]:
    return [(r.stream_id, r.version, r.event_type, r.schema_version, r.payload, r.metadata) for r in rows_]


def as_appended(events: Sequence[StoredEvent]) -> list[tuple[Any, ...]]:
    return [(e.stream_id, e.version, e.event_type, e.schema_version, dict(e.payload), dict(e.metadata))
            for e in events]


@pytest.mark.timeout(120)
def test_a_backlog_written_before_migration_008_is_published_whole_and_in_order(
    worker_env: dict[str, str], database_url: str, store: PostgresEventStore
) -> None:
    appended = write_both_eras(database_url, store)
    before = unpublished_007(database_url)
    assert as_recorded(before) == as_appended(appended)  # the backlog as the relay of 007 read it

    migrate(database_url)
    assert outbox_columns(database_url) == ["position", "event_position", "created_at", "stream_id"]
    assert rows(database_url, "SELECT count(*) FROM outbox o JOIN events e ON e.global_position = o.event_position"
                              " AND e.stream_id = o.stream_id") == [(len(appended),)]
    # every field, the positions and the creation times: the same rows
    assert relay_rows(database_url) == before

    settings = settings_for(worker_env)
    create_worker_topics(settings)
    app, stopper = bootstrap.bootstrap(settings), Stopper()
    try:
        with running(bootstrap.relay(app, stopper, IdleClock(None))) as relay:
            wait_for(lambda: rows(database_url, "SELECT count(*) FROM outbox") == [(0,)], what="the backlog published")
            stopper.stop()
    finally:
        app.close()
    assert relay["code"] == 0
    published = consume_all(settings.kafka.bootstrap_servers, settings.kafka.events_topic)
    assert len(published) == len(before)
    codec = ClientEventCodec.from_directory()
    for stream in (A, B, C):
        ours = [m for m in published if m.key() == stream.encode()]  # one partition per key: in offset order
        wanted = [r for r in before if r.stream_id == stream]
        assert wanted
        # in version order, each value byte for byte what the relay of 007 would have sent, with its headers
        assert [m.value() for m in ours] == [codec.encode_row(r) for r in wanted]
        assert [m.headers() for m in ours] == [event_headers(r) for r in wanted]


def test_the_migration_stops_and_changes_nothing_when_a_waiting_row_refers_to_no_stored_event(
    database_url: str, store: PostgresEventStore
) -> None:
    write_both_eras(database_url, store)
    before = unpublished_007(database_url)
    rows(database_url, "UPDATE outbox SET event_id = gen_random_uuid() WHERE position = 4 RETURNING position")
    with pytest.raises(psycopg.errors.RaiseException, match=r"1 outbox row\(s\) refer to no stored event"
                                                            r" \(positions \{4\}"):
        migrate(database_url)
    assert rows(database_url, "SELECT max(version) FROM schema_migrations") == [(7,)]
    assert "payload" in outbox_columns(database_url)
    assert [r.position for r in unpublished_007(database_url)] == [r.position for r in before]


def test_the_relay_reads_the_same_rows_as_before_008_for_compact_events_and_events_stored_before_007(
    new_database: Callable[[], str],
) -> None:
    """The same events written the way of 007 (and before) and the way of 008: the relay gives the same rows,
    every field as recorded, whatever metadata a batch shares, its events leave out or their types share."""
    metas = [
        {"worker_version": "9.9", "source_topic": "cdc\\topic\tx", "traceparent": None, **own} for own in (
            {"command": "RegisterClient", "transaction_key": "tk-1", "sequence_number": 2,
             "commit_timestamp": 1_700_000_000_000, "correlation_id": "tk-1", "causation_id": "cdc\\topic\tx:0:7",
             "source_partition": 0, "source_offset": 7, "replay_id": None},
            {"command": "ChangeClientDetails", "transaction_key": "other", "sequence_number": 2.0,
             "commit_timestamp": True, "correlation_id": "tk-1", "causation_id": "elsewhere",
             "source_partition": 0, "source_offset": 8},
            {"command": "MarkClientForResync", "reason": "gap ünïcode"})
    ] + [{"worker_version": "9.9", "merged_into": "001000000000009AAA"}]

    def events(stream: str) -> list[StoredEvent]:
        change = {"record_id": stream, "commit_number": 7, "sequence_number": 2, "transaction_key": "tk-1",
                  "last_modified_ms": None, "commit_timestamp_ms": 1_700_000_000_000}
        payloads: list[dict[str, Any]] = [
            {"change": change, "n": 1.5}, {"change": {**change, "record_id": "elsewhere"}, "x": "a\\b"},
            {"change": None, "reason": "gap"}, {"deleted": True}]
        return [StoredEvent(stream, version, "ClientRegistered" if version < 3 else "ClientMarkedForResync", 1,
                            payload, {"event_id": new_event_id(), **meta})
                for version, (payload, meta) in enumerate(zip(payloads, metas, strict=True), start=1)]

    whole, compact = events(B), events(A)  # B stored before 007, A by a compact batch
    read = []
    for label in ("007", "008"):
        dsn = new_database()
        migrate(dsn, up_to=6)
        write_as_006(dsn, whole)
        migrate(dsn, up_to=7 if label == "007" else None)
        pool = make_pool(dsn, 2, 5.0)
        try:
            if label == "007":
                with filling_the_outbox_as_007():
                    PostgresEventStore(pool).commit(BatchChanges(events=compact))
                read.append(unpublished_007(dsn))
            else:
                PostgresEventStore(pool).commit(BatchChanges(events=compact))
                read.append(relay_rows(dsn))
        finally:
            pool.close()
    old, new = read
    assert as_recorded(new) == as_appended([*whole, *compact])
    assert [replace(r, created_at=None) for r in new] == [replace(r, created_at=None) for r in old]


def test_a_row_whose_event_is_missing_parks_its_stream_with_an_error_and_stays_in_the_outbox(
    database_url: str, store: PostgresEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    migrate(database_url)
    store.commit(decided(store, [register(A), register(B), change_phone(A, "1"), change_phone(B, "2"),
                                 change_phone(A, "3")]).changes())
    ((gone,),) = rows(database_url, "DELETE FROM events WHERE stream_id = %s AND version = 2"
                                    " RETURNING global_position", (A,))
    ((position,),) = rows(database_url, "SELECT position FROM outbox WHERE event_position = %s", (gone,))
    producer, parked = FakeProducer(), list[int]()
    outbox = PostgresOutbox(database_url)
    control = RoleControl(Stopper(), IdleClock(None), RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.01))
    relay = OutboxRelay(outbox, producer, ClientEventCodec.from_directory().encode_row,  # type: ignore[arg-type]
                        RelaySettings("client.events"), control, RelayHooks(on_parked=parked.append))
    try:
        with caplog.at_level(logging.ERROR, logger="worker.relay"):
            assert relay.step() == 3
            assert relay.step() == 0  # A is held back: its rows are not read again
    finally:
        outbox.close()
    assert [(r.key, dict(r.headers)["event_type"]) for r in producer.delivered] == [
        (A.encode(), b"ClientRegistered"), (B.encode(), b"ClientRegistered"), (B.encode(), b"ClientDetailsChanged")]
    # the row and every later row of A wait in the outbox; nothing was skipped
    assert rows(database_url, "SELECT o.position, e.version FROM outbox o LEFT JOIN events e"
                              " ON e.global_position = o.event_position ORDER BY o.position") == [
        (position, None), (position + 2, 3)]
    assert set(relay.parked) == {A} and parked == [1]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"outbox row {position} (of {A})" in errors[0]
    assert f"global position {gone}" in errors[0] and "not in the events table" in errors[0]


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child)


@pytest.mark.parametrize("held_back", [[], [f"S{n:05d}" for n in range(50)]])
def test_a_page_of_the_outbox_looks_up_its_events_by_index_and_reads_no_more_of_them(
    database_url: str, held_back: list[str]
) -> None:
    """Tens of thousands of events, a backlog of thousands: each row of the page is one index lookup into the
    events (the LIMIT bounds them), never a scan of the events table."""
    migrate(database_url)
    with make_pool(database_url, 1, 5.0) as pool, pool.connection() as conn:
        conn.execute("INSERT INTO event_batches (metadata) SELECT jsonb_build_object('worker_version', 't', 'n', n)"
                     " FROM generate_series(1, 80) n")
        conn.execute(
            "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, payload, metadata,"
            " batch_id) SELECT 'S' || lpad((g % 2000)::text, 5, '0'), g / 2000 + 1, gen_random_uuid(),"
            " 'ClientDetailsChanged', 1, '{\"details\": {\"phone\": \"1\"}}', '{\"command\": \"X\"}', g / 500 + 1"
            " FROM generate_series(0, 39999) g")
        conn.execute("INSERT INTO outbox (event_position, stream_id) SELECT global_position, stream_id FROM events"
                     " WHERE global_position > 36000 ORDER BY global_position")
        conn.execute("ANALYZE events")
        conn.execute("ANALYZE outbox")
        conn.execute("ANALYZE event_batches")
        (plan,), = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {_UNPUBLISHED}", (held_back, 500)).fetchall()
    nodes = list(plan_nodes(plan[0]["Plan"]))
    on_events = [n for n in nodes if n.get("Relation Name") == "events"]
    assert [n["Node Type"] for n in on_events] == ["Index Scan"], on_events
    assert on_events[0]["Index Name"] == "events_global_position_key"
    assert on_events[0]["Actual Loops"] == 500  # one lookup per row of the page
    assert nodes[0]["Node Type"] == "Limit" and nodes[0]["Actual Rows"] == 500


def test_a_page_over_several_batches_gives_each_row_its_own_batch_s_shared_metadata(
    database_url: str, store: PostgresEventStore
) -> None:
    """The relay parses a batch's shared metadata once for the page: rows of three batches, told apart by what
    their batches share (worker version, source topic, command), each come back exactly as appended."""
    migrate(database_url)
    appended: list[StoredEvent] = []
    for n, commands in enumerate(([register(A), register(B)], [change_phone(A, "1"), register(C)],
                                  [change_phone(B, "2"), change_phone(A, "3"), change_phone(C, "4")])):
        batch = ClientBatch(store, snapshot_interval=100, worker_version=f"v{n}")
        for command in commands:
            CommandBus().handle(command, HandlerContext(batch, StatusRule()))
        batch.commit()
        appended += batch.changes().events
    assert len(set(rows(database_url, "SELECT batch_id FROM events"))) == 3
    assert as_recorded(relay_rows(database_url)) == as_appended(appended)
    assert as_recorded(relay_rows(database_url, limit=4)) == as_appended(appended[:4])  # a page ending mid-batch
