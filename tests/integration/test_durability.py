"""The durability check against the stack's real PostgreSQL, which runs without fsync, synchronous_commit and
full_page_writes (deploy/stack.py: fine for tests): bootstrap warns once and exports worker_database_durable 0;
with WORKER_POSTGRES__REQUIRE_DURABLE it refuses to start."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tests.harness import settings_for
from worker import bootstrap
from worker.adapters.postgres.durability import read_durability
from worker.health import DatabaseNotDurable
from worker.observability import Metrics


def durable_gauge(reader: InMemoryMetricReader) -> list[float]:
    data = reader.get_metrics_data()
    return [point.value for resource in (data.resource_metrics if data else []) for scope in resource.scope_metrics
            for metric in scope.metrics if metric.name == "worker_database_durable"
            for point in metric.data.data_points]


def test_the_reader_reads_the_servers_settings(database_url: str) -> None:
    verdict = read_durability(database_url, 5.0)
    assert set(verdict.settings) == {"fsync", "synchronous_commit", "full_page_writes"}
    assert sorted(verdict.unsafe) == sorted(f"{n}={v}" for n, v in verdict.settings.items() if v == "off")


def test_bootstrap_on_the_test_stack_warns_once_and_exports_the_gauge(
    worker_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    reader = InMemoryMetricReader()
    with caplog.at_level(logging.INFO, logger="worker.health"):
        app = bootstrap.bootstrap(settings_for(worker_env), metrics=Metrics([reader]))
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "fsync=off" in warnings[0] and "synchronous_commit=off" in warnings[0]
        assert durable_gauge(reader) == [0]
        _, body = app.health.report("ready")
        check = body["checks"]["database durability"]
        assert check["ok"] and check["detail"].startswith("NOT durable: fsync=off")
    finally:
        app.close()


def test_requiring_durability_refuses_to_start_on_the_test_stack(worker_env: dict[str, str]) -> None:
    settings = settings_for(worker_env, WORKER_POSTGRES__REQUIRE_DURABLE="true")
    with pytest.raises(DatabaseNotDurable, match="fsync=off, synchronous_commit=off, full_page_writes=off"):
        bootstrap.bootstrap(settings)
