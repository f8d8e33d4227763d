"""The retention cliff on the real broker: records deleted below the group's committed offset (delete_records
moves the log start, as retention would) are noticed at assignment: one error naming the partition and the
offsets lost, a counter, a reconcile requested from the last change applied from that partition, and
`worker lag` shows it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tests.cdc_factory import CdcFactory
from tests.harness import create_worker_topics, rows, settings_for
from worker import bootstrap
from worker.entrypoints.cli import main
from worker.observability import Metrics
from worker.roles.runtime import IdleClock, Stopper


def _produce(bootstrap_servers: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True})
    for key, value in messages:
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(30) == 0


def _ingest(settings: Any, reader: InMemoryMetricReader | None = None, idle_s: float = 1.0) -> None:
    app = bootstrap.bootstrap(settings, metrics=Metrics([reader] if reader else []))
    try:
        assert bootstrap.ingest_loop(app, Stopper(), IdleClock(idle_s)).run() == 0
    finally:
        app.close()


def _lost_counter(reader: InMemoryMetricReader) -> list[tuple[dict[str, Any], int]]:
    data = reader.get_metrics_data()
    return [(dict(point.attributes), point.value) for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics for metric in scope.metrics
            if metric.name == "worker_retention_lost_offsets" for point in metric.data.data_points]


def test_input_deleted_below_the_committed_offset_is_one_error_a_counter_and_a_reconcile_request(
    worker_env: dict[str, str], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_for(worker_env)
    create_worker_topics(settings)
    servers, topic = settings.kafka.bootstrap_servers, settings.kafka.cdc_topic
    f = CdcFactory()
    _produce(servers, topic, [f.create(f"00100000000000{n}AAA") for n in range(1, 4)])  # offsets 0..2
    _ingest(settings)
    dsn = settings.postgres.url.get_secret_value()
    last_applied = rows(dsn, "SELECT max((metadata->>'commit_timestamp')::bigint) FROM events_with_metadata")[0][0]
    _produce(servers, topic, [f.create(f"00100000000001{n}AAA") for n in range(5)])  # offsets 3..7, never read
    admin = AdminClient({"bootstrap.servers": servers})
    for future in admin.delete_records([TopicPartition(topic, 0, 6)]).values():
        assert future.result(timeout=30).low_watermark == 6  # the log now starts at 6: offsets 3, 4 and 5 are gone

    reader = InMemoryMetricReader()
    with caplog.at_level(logging.INFO, logger="worker.retention"):
        _ingest(settings, reader, idle_s=3.0)  # librdkafka's offset reset after the fetch error takes a moment
    errors = [r.getMessage() for r in caplog.records if r.name == "worker.retention" and r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert f"{topic}[0] 3 offset(s)" in errors[0] and "committed 3 < log start 6" in errors[0]
    assert _lost_counter(reader) == [({"topic": topic, "partition": "0"}, 3)]
    requested = rows(dsn, "SELECT (extract(epoch FROM since) * 1000)::bigint, done_at FROM reconcile_requests")
    assert requested == [(last_applied, None)]
    assert rows(dsn, "SELECT count(*) FROM events") == [(5,)], "the two records left after the cliff are applied"

    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)
    assert main(["lag"]) == 0
    assert "retention cliff" in capsys.readouterr().out
