"""The command side end to end in one process, against the real broker and database: CDC in, events in the
store and on `client.events`, dead letters, replays, outages, two workers, conflicts."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from tests.cdc_factory import CdcFactory
from tests.conftest import wait_for
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import (
    StubMessage,
    change_phone,
    consume_all,
    create_worker_topics,
    event_count,
    produce,
    register,
    rows,
    running,
    settings_for,
)
from worker import bootstrap
from worker.adapters.kafka import dlq as dlq_headers
from worker.application.errors import ConcurrencyConflict
from worker.application.handlers import HandlerContext
from worker.config import Settings
from worker.roles.ingest import Decoded, IngestProcessor
from worker.roles.runtime import IdleClock, Stopper

A, B, C = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"


def run_role(settings: Settings, role: str, idle_s: float = 1.5) -> int:
    app = bootstrap.bootstrap(settings)
    try:
        builder = {"ingest": bootstrap.ingest_loop, "relay": bootstrap.relay, "projector": bootstrap.projector_loop}
        return int(builder[role](app, Stopper(), IdleClock(idle_s)).run())
    finally:
        app.close()


@pytest.fixture
def settings(worker_env: dict[str, str]) -> Settings:
    s = settings_for(worker_env)
    create_worker_topics(s)
    return s


def produce_changes(settings: Settings, changes: list[tuple[bytes, bytes]]) -> None:
    produce(settings.kafka.bootstrap_servers, settings.kafka.cdc_topic, changes)


def test_cdc_messages_become_events_in_the_store_and_on_the_events_topic(settings: Settings) -> None:
    f = CdcFactory()
    produce_changes(settings, [f.create(A, Industry="Energy"), f.create(B), f.update(A, Phone="+1 555"),
                               f.update(A, nulled=("Industry",)), f.delete(B)])
    assert run_role(settings, "ingest") == 0
    stored = rows(settings.postgres.url.get_secret_value(),
                  "SELECT stream_id, version, event_type, metadata FROM events_with_metadata"
                  " ORDER BY stream_id, version")
    assert [(s, v, t) for s, v, t, _ in stored] == [
        (A, 1, "ClientRegistered"), (A, 2, "ClientDetailsChanged"), (A, 3, "ClientDetailsChanged"),
        (B, 1, "ClientRegistered"), (B, 2, "ClientDeleted"),
    ]
    meta = stored[0][3]
    assert meta["source_topic"] == settings.kafka.cdc_topic and meta["transaction_key"]
    assert meta["correlation_id"] == meta["transaction_key"]
    assert meta["causation_id"].startswith(settings.kafka.cdc_topic)
    assert rows(settings.postgres.url.get_secret_value(), "SELECT count(*) FROM outbox") == [(len(stored),)]
    assert run_role(settings, "relay") == 0
    published = consume_all(settings.kafka.bootstrap_servers, settings.kafka.events_topic)
    assert sorted((m.key().decode(), dict(m.headers())["event_type"].decode()) for m in published) == sorted(
        (s, t) for s, _, t, _ in stored
    )
    headers = dict(published[0].headers())
    assert set(headers) >= {"event_type", "event_id", "schema_version", "correlation_id", "causation_id"}
    # published rows leave the outbox (a queue, not a second copy of the events)
    assert rows(settings.postgres.url.get_secret_value(), "SELECT count(*) FROM outbox") == [(0,)]


def test_replaying_the_ingest_group_from_the_earliest_offset_appends_nothing(settings: Settings) -> None:
    f = CdcFactory()
    produce_changes(settings, [f.create(A), f.update(A, Phone="1"), f.create(B), f.delete(B), f.undelete(B)])
    assert run_role(settings, "ingest") == 0
    dsn = settings.postgres.url.get_secret_value()
    before = event_count(dsn)
    assert before == 5
    admin = AdminClient(settings.kafka.client_config())
    from confluent_kafka import ConsumerGroupTopicPartitions

    reset = [TopicPartition(settings.kafka.cdc_topic, p, 0) for p in range(settings.kafka.partitions)]
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(settings.kafka.ingest_group, reset)])[
        settings.kafka.ingest_group
    ].result()
    assert run_role(settings, "ingest") == 0
    assert event_count(dsn) == before


def test_a_poison_message_is_dead_lettered_with_its_reason_and_the_messages_behind_it_are_processed(
    settings: Settings,
) -> None:
    f = CdcFactory()
    k = settings.kafka
    produce(k.bootstrap_servers, k.cdc_topic, [(A.encode(), b"\x00not a change event")])
    produce_changes(settings, [f.create(A), f.update(A, Phone="2")])
    assert run_role(settings, "ingest") == 0
    assert event_count(settings.postgres.url.get_secret_value()) == 2
    letters = consume_all(k.bootstrap_servers, k.cdc_dlq_topic)
    assert len(letters) == 1
    headers = {key: value.decode() for key, value in letters[0].headers()}
    assert letters[0].value() == b"\x00not a change event" and letters[0].key() == A.encode()
    assert headers[dlq_headers.H_TOPIC] == k.cdc_topic and headers[dlq_headers.H_STAGE] == "parse"
    assert headers[dlq_headers.H_GROUP] == k.ingest_group and headers[dlq_headers.H_OFFSET] == "0"
    assert headers[dlq_headers.H_CLASS] and headers[dlq_headers.H_MESSAGE]
    assert "Traceback" in headers[dlq_headers.H_STACKTRACE]


def test_a_database_outage_mid_run_makes_the_worker_wait_and_resume_without_loss(
    worker_env: dict[str, str], database_url: str
) -> None:
    host_port = database_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    with TcpProxy(host, int(port)) as proxy:
        proxied = database_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        settings = settings_for(worker_env, WORKER_POSTGRES__URL=proxied)
        create_worker_topics(settings)
        f = CdcFactory()
        produce_changes(settings, [f.create(A), f.create(B)])
        app = bootstrap.bootstrap(settings)
        stopper = Stopper()
        loop = bootstrap.ingest_loop(app, stopper, IdleClock(None))
        with running(loop) as result:
            wait_for(lambda: event_count(database_url) == 2, what="the first two events")
            proxy.cut()
            produce_changes(settings, [f.update(A, Phone="3"), f.create(C)])
            attempts = threading.Event()
            threading.Timer(2.0, attempts.set).start()
            wait_for(attempts.is_set, what="the worker to retry against the cut database")
            assert event_count(database_url) == 2
            proxy.restore()
            wait_for(lambda: event_count(database_url) == 4, timeout_s=60, what="the events after the outage")
            stopper.stop()
        app.close()
        assert result["code"] == 0
    assert rows(database_url, "SELECT stream_id, max(version) FROM events GROUP BY 1 ORDER BY 1") == [
        (A, 2), (B, 1), (C, 1)
    ]


def test_two_ingest_workers_in_one_group_append_no_duplicates(settings: Settings) -> None:
    f = CdcFactory()
    ids = [f"001{n:012d}AAA" for n in range(40)]
    changes: list[Any] = []
    for cid in ids:
        changes += [f.create(cid), f.update(cid, Phone=cid[-6:]), f.update(cid, Industry="Banking")]
    produce_changes(settings, changes)
    apps = [bootstrap.bootstrap(settings) for _ in range(2)]
    stoppers = [Stopper(), Stopper()]
    loops = [bootstrap.ingest_loop(app, s, IdleClock(None)) for app, s in zip(apps, stoppers, strict=True)]
    dsn = settings.postgres.url.get_secret_value()
    with running(loops[0]) as first, running(loops[1]) as second:
        wait_for(lambda: event_count(dsn) >= 120, timeout_s=90, what="120 events")
        for s in stoppers:
            s.stop()
    for app in apps:
        app.close()
    assert first["code"] == 0 and second["code"] == 0
    assert event_count(dsn) == 120
    versions = rows(dsn, "SELECT stream_id, array_agg(version ORDER BY version) FROM events GROUP BY 1")
    assert all(v == [1, 2, 3] for _, v in versions) and len(versions) == 40


def test_the_event_store_reports_a_taken_version_as_a_concurrency_conflict(settings: Settings) -> None:
    app = bootstrap.bootstrap(settings)
    try:
        first, second = app.new_batch(), app.new_batch()
        for batch in (first, second):
            batch.preload([A])
        app.bus.handle(register(A), HandlerContext(first, app.rule))
        app.bus.handle(register(A, name="Other"), HandlerContext(second, app.rule))
        app.store.commit(first.changes())
        with pytest.raises(ConcurrencyConflict):
            app.store.commit(second.changes())
    finally:
        app.close()
    assert event_count(settings.postgres.url.get_secret_value()) == 1


def test_a_concurrency_conflict_is_reloaded_and_retried(settings: Settings) -> None:
    """A rival writer takes the next version of the stream between our load and our commit."""
    app = bootstrap.bootstrap(settings)
    try:
        seed = app.new_batch()
        app.bus.handle(register(A), HandlerContext(seed, app.rule))
        app.store.commit(seed.changes())
        real_begin = app.store.begin_commit
        rival_done: list[bool] = []
        rival_change, our_change = change_phone(A, "rival"), change_phone(A, "ours")  # Salesforce's order

        def begin_after_a_rival(changes: Any) -> Any:
            if not rival_done:
                rival_done.append(True)
                rival = app.new_batch()
                app.bus.handle(rival_change, HandlerContext(rival, app.rule))
                real_begin(rival.changes()).wait()
            return real_begin(changes)

        app.store.begin_commit = begin_after_a_rival  # type: ignore[method-assign]
        processor = IngestProcessor(
            lambda _m: Decoded([our_change]), (), app.bus, app.new_batch, app.rule
        )
        outcome = processor.process([StubMessage()])
    finally:
        app.close()
    assert outcome.events == 1
    phones = rows(settings.postgres.url.get_secret_value(),
                  "SELECT version, payload->'changes'->'phone' FROM events WHERE stream_id = %s ORDER BY 1", (A,))
    assert phones[1:] == [(2, [None, "rival"]), (3, ["rival", "ours"])]


def test_a_poison_message_near_1_mb_is_dead_lettered_as_a_reference_and_the_rest_is_applied(
    settings: Settings,
) -> None:
    import hashlib

    from confluent_kafka import Producer

    k = settings.kafka
    poison = b"\x00" + b"\xff" * 999_000  # with the reason headers it would pass the 1 MB limit
    producer = Producer({"bootstrap.servers": k.bootstrap_servers, "message.max.bytes": 1_040_000})
    producer.produce(k.cdc_topic, key=A.encode(), value=poison)
    assert producer.flush(30) == 0
    produce_changes(settings, [CdcFactory().create(A)])
    assert run_role(settings, "ingest") == 0
    assert event_count(settings.postgres.url.get_secret_value()) == 1
    [letter] = consume_all(k.bootstrap_servers, k.cdc_dlq_topic)
    headers = {key: value.decode() for key, value in letter.headers()}
    assert letter.value() is None and letter.key() == A.encode()
    assert headers[dlq_headers.H_ORIGINAL_OMITTED] == "value"
    assert headers[dlq_headers.H_ORIGINAL_SIZE] == str(len(poison))
    assert headers[dlq_headers.H_ORIGINAL_SHA256] == hashlib.sha256(poison).hexdigest()
    assert headers[dlq_headers.H_STAGE] == "parse" and headers[dlq_headers.H_OFFSET] == "0"


def test_a_change_refused_at_validate_is_dead_lettered_and_its_client_queued_for_resync(settings: Settings) -> None:
    f = CdcFactory()
    produce_changes(settings, [f.create(A, NumberOfEmployees="many"), f.create(B), f.update(A, Phone="held")])
    assert run_role(settings, "ingest") == 0
    k, dsn = settings.kafka, settings.postgres.url.get_secret_value()
    letters = consume_all(k.bootstrap_servers, k.cdc_dlq_topic)
    assert len(letters) == 1
    headers = {key: value.decode() for key, value in letters[0].headers()}
    assert headers[dlq_headers.H_STAGE] == "validate" and headers[dlq_headers.H_CLASS].endswith("InvalidChangeValues")
    assert "employees" in headers[dlq_headers.H_MESSAGE]
    assert headers[dlq_headers.H_RESYNC] == f"marked for resync: {A}"
    assert rows(dsn, "SELECT stream_id, event_type FROM events ORDER BY stream_id, version") == [
        (A, "ClientMarkedForResync"), (B, "ClientRegistered")]
    assert rows(dsn, "SELECT client_id FROM resync_requests") == [(A,)]


def _process_without_value_rules(settings: Settings, batch: list[Any]) -> Any:
    """One batch through the real ingest processor and store, with the value rules left out of the bus (so values
    only PostgreSQL refuses reach it)."""
    from worker.adapters.salesforce.errors import ChangeEventParseError
    from worker.application.bus import CommandBus

    app = bootstrap.bootstrap(settings)
    try:
        processor = IngestProcessor(bootstrap.decoder(app), (ChangeEventParseError,), CommandBus(middleware=[]),
                                    app.new_batch, app.rule)
        return processor.process(batch)
    finally:
        app.close()


def test_values_postgres_refuses_are_isolated_by_splitting_the_batch_and_the_rest_is_applied(
    settings: Settings,
) -> None:
    """The last line of defence, against the real PostgreSQL: with the value rules left out of the bus, a NUL
    and an Infinity reach the event store, which refuses them (DataError); the batch is bisected."""
    from tests.unit.roles.ingest_kit import messages

    f = CdcFactory()
    batch = messages(f.create(A), f.create(B, Phone="+1\u0000555"), f.create(C), f.update(A, Phone="1"),
                     f.create("001000000000004AAA", Custom__c=float("inf")), f.update(C, Phone="2"))
    outcome = _process_without_value_rules(settings, batch)
    assert [(letter.message.offset(), letter.stage.value) for letter in outcome.dead_letters] == [
        (1, "handle"), (4, "handle")]
    assert all(type(letter.error).__module__ == "psycopg.errors" for letter in outcome.dead_letters)
    dsn = settings.postgres.url.get_secret_value()
    assert rows(dsn, "SELECT stream_id, event_type FROM events ORDER BY stream_id, version") == [
        (A, "ClientRegistered"), (A, "ClientDetailsChanged"), (B, "ClientMarkedForResync"),
        (C, "ClientRegistered"), (C, "ClientDetailsChanged"), ("001000000000004AAA", "ClientMarkedForResync"),
    ]
    assert rows(dsn, "SELECT client_id FROM resync_requests ORDER BY 1") == [(B,), ("001000000000004AAA",)]


def test_a_value_postgres_refuses_early_in_a_long_copy_is_isolated_too(settings: Settings) -> None:
    """The COPY goes out in chunks as its rows are made: a refusal in the first chunk, while later chunks are
    still being sent, is the same row-data error, so bisection isolates the one message (150 messages)."""
    from tests.unit.roles.ingest_kit import messages

    f = CdcFactory()
    ids = [f"001000000000{i:03d}AAA" for i in range(100, 250)]
    batch = messages(*(f.create(cid, Phone="+1\u0000555" if i == 3 else f"+1{i}") for i, cid in enumerate(ids)))
    outcome = _process_without_value_rules(settings, batch)
    assert [(letter.message.offset(), letter.stage.value) for letter in outcome.dead_letters] == [(3, "handle")]
    dsn = settings.postgres.url.get_secret_value()
    registered = rows(dsn, "SELECT stream_id FROM events WHERE event_type = 'ClientRegistered' ORDER BY 1")
    assert [r[0] for r in registered] == [cid for i, cid in enumerate(ids) if i != 3]
    assert rows(dsn, "SELECT client_id FROM resync_requests") == [(ids[3],)]


def _pubsub_json_update(client_id: str, phone: str, commit_ms: int) -> tuple[bytes, bytes]:
    """A Pub/Sub JSON update whose Phone is ``phone`` as JSON writes it (a lone surrogate as its "\\ud800"
    escape: valid JSON, decoded to a str with no UTF-8 form)."""
    import json

    doc = {"ChangeEventHeader": {
        "entityName": "Account", "recordIds": [client_id], "changeType": "UPDATE", "changeOrigin": "",
        "transactionKey": f"tk-{commit_ms}", "sequenceNumber": 1, "commitTimestamp": commit_ms, "commitNumber": 1,
        "commitUser": "005000000000001AAA", "changedFields": ["Phone"], "nulledFields": [], "diffFields": []},
        "Phone": phone}
    return client_id.encode(), json.dumps(doc).encode()


def test_a_text_with_no_utf8_form_is_dead_lettered_at_validate_and_the_rest_is_applied(settings: Settings) -> None:
    """An unpaired surrogate in a JSON change (its escape is valid JSON) stopped the worker at the COPY: PostgreSQL
    has no encoding for it. The value rules now refuse it; the messages behind it are applied."""
    f = CdcFactory()
    produce_changes(settings, [f.create(A), _pubsub_json_update(A, "x\ud800y", 1_750_000_001_000),
                               f.create(B), f.update(B, Phone="2")])
    assert run_role(settings, "ingest") == 0
    k, dsn = settings.kafka, settings.postgres.url.get_secret_value()
    [letter] = consume_all(k.bootstrap_servers, k.cdc_dlq_topic)
    headers = {key: value.decode() for key, value in letter.headers()}
    assert headers[dlq_headers.H_STAGE] == "validate" and headers[dlq_headers.H_RESYNC] == f"marked for resync: {A}"
    assert "phone: contains an unpaired surrogate" in headers[dlq_headers.H_MESSAGE]
    assert rows(dsn, "SELECT stream_id, event_type FROM events ORDER BY stream_id, version") == [
        (A, "ClientRegistered"), (A, "ClientMarkedForResync"), (B, "ClientRegistered"), (B, "ClientDetailsChanged")]


def test_a_text_the_store_cannot_encode_is_isolated_by_splitting_the_batch(settings: Settings) -> None:
    """The last line of defence for the same text, with the value rules left out: psycopg cannot encode it for
    the COPY (UnicodeEncodeError); that is one row's data, so the batch is bisected, not the worker stopped."""
    from tests.unit.roles.ingest_kit import messages

    f = CdcFactory()
    batch = messages(f.create(A), _pubsub_json_update(A, "x\ud800y", 1_750_000_001_000), f.create(B),
                     f.update(B, Phone="2"))
    outcome = _process_without_value_rules(settings, batch)
    assert [(letter.message.offset(), letter.stage.value, type(letter.error).__name__)
            for letter in outcome.dead_letters] == [(1, "handle", "UnicodeEncodeError")]
    dsn = settings.postgres.url.get_secret_value()
    assert rows(dsn, "SELECT stream_id, event_type FROM events ORDER BY stream_id, version") == [
        (A, "ClientRegistered"), (A, "ClientMarkedForResync"), (B, "ClientRegistered"), (B, "ClientDetailsChanged")]
