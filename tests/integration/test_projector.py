"""The projector against the real broker and database: a redelivered event is a no-op, a version gap is
dead-lettered with stage `project` and never applied."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.harness import consume_all, create_worker_topics, produce, rows, settings_for
from worker import bootstrap
from worker.adapters.avro import ClientEventCodec, to_wire
from worker.adapters.kafka import dlq
from worker.config import Settings
from worker.roles.runtime import IdleClock, Stopper

A, B = "001000000000001AAA", "001000000000002AAA"
DETAILS = {"name": "Acme", "billing_address": {}, "extra": {}}


@pytest.fixture
def settings(worker_env: dict[str, str]) -> Settings:
    s = settings_for(worker_env)
    create_worker_topics(s)
    return s


def event(codec: ClientEventCodec, event_type: str, version: int, client: str = A,
          **payload: object) -> tuple[bytes, bytes, list]:
    event_id = str(uuid.uuid4())
    record = {**to_wire(payload), "event_id": event_id, "client_id": client, "version": version,
              "recorded_at": datetime.now(UTC)}
    headers = [("event_type", event_type.encode()), ("schema_version", b"1"), ("event_id", event_id.encode())]
    return client.encode(), codec.encode(event_type, 1, record), headers


def test_redelivery_is_a_no_op_and_a_version_gap_is_dead_lettered(settings: Settings) -> None:
    codec = ClientEventCodec.from_directory()
    registered = event(codec, "ClientRegistered", 1, details=DETAILS, status="active", change=None)
    gap = event(codec, "ClientDeleted", 3, change=None)
    k = settings.kafka
    for key, value, headers in (registered, registered, gap):
        produce(k.bootstrap_servers, k.events_topic, [(key, value)], headers=headers)
    run_projector(settings)
    dsn = settings.postgres.url.get_secret_value()
    assert rows(dsn, "SELECT name, version, deleted FROM client_summary") == [("Acme", 1, False)]
    letters = consume_all(k.bootstrap_servers, k.events_dlq_topic)
    assert len(letters) == 1
    headers = {key: value.decode() for key, value in letters[0].headers()}
    assert headers[dlq.H_STAGE] == "project" and headers[dlq.H_CLASS].endswith("VersionGap")
    assert "projected v1, got v3" in headers[dlq.H_MESSAGE]


def test_a_rebuild_from_the_event_store_waits_for_an_append_that_took_a_lower_position(settings: Settings) -> None:
    """bigserial order is not commit order: a slower writer holds position p while a faster one commits p+1.
    The rebuild must not page past p and skip that event (the client's next events would be gaps)."""
    import threading

    import psycopg

    from tests.conftest import wait_for
    from tests.harness import register
    from worker.application.handlers import HandlerContext
    from worker.roles.rebuild import rebuild_from_event_store

    first, late, fast = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"
    dsn = settings.postgres.url.get_secret_value()
    app = bootstrap.bootstrap(settings)
    try:
        def append(client_id: str) -> None:
            batch = app.new_batch()
            app.bus.handle(register(client_id), HandlerContext(batch, app.rule))
            batch.commit()

        append(first)
        with psycopg.connect(dsn) as slow:  # takes the next position and does not commit yet
            slow.execute(
                "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, payload, metadata)"
                " SELECT %s, version, gen_random_uuid(), event_type, schema_version, payload,"
                " jsonb_set(metadata, '{event_id}', to_jsonb(gen_random_uuid()::text)) FROM events"
                " WHERE stream_id = %s", (late, first))
            append(fast)  # a higher position, committed first
            done: dict[str, int] = {}
            rebuild = threading.Thread(target=lambda: done.setdefault(
                "events", rebuild_from_event_store(app.store, bootstrap.read_models(app), lambda *_: None)))
            rebuild.start()
            wait_for(lambda: rows(dsn, "SELECT count(*) FROM pg_locks WHERE relation = 'events'::regclass"
                                       " AND NOT granted")[0][0] > 0, what="the rebuild to wait for the append")
            slow.commit()
        rebuild.join(30)
        assert not rebuild.is_alive()
    finally:
        app.close()
    assert done["events"] == 3
    assert rows(dsn, "SELECT client_id FROM client_summary ORDER BY 1") == [(first,), (late,), (fast,)]


def test_an_event_whose_values_the_read_model_refuses_is_dead_lettered_and_the_rest_is_projected(
    settings: Settings,
) -> None:
    codec = ClientEventCodec.from_directory()
    good = event(codec, "ClientRegistered", 1, details=DETAILS, status="active", change=None)
    nul = {**DETAILS, "name": "Ac\u0000me"}  # Avro carries it; PostgreSQL text cannot
    bad = event(codec, "ClientRegistered", 1, B, details=nul, status="active", change=None)
    later = event(codec, "ClientDeleted", 2, change=None)
    k = settings.kafka
    for key, value, headers in (good, bad, later):
        produce(k.bootstrap_servers, k.events_topic, [(key, value)], headers=headers)
    run_projector(settings)
    assert rows(settings.postgres.url.get_secret_value(), "SELECT client_id, version, deleted FROM client_summary") == [
        (A, 2, True)]
    letters = consume_all(k.bootstrap_servers, k.events_dlq_topic)
    assert len(letters) == 1
    headers = {key: value.decode() for key, value in letters[0].headers()}
    assert headers[dlq.H_STAGE] == "project" and headers[dlq.H_CLASS].startswith("psycopg")


def run_projector(settings: Settings) -> None:
    """The projector until it is idle (everything consumed and committed)."""
    app = bootstrap.bootstrap(settings)
    try:
        assert bootstrap.projector_loop(app, Stopper(), IdleClock(1.5)).run() == 0
    finally:
        app.close()
