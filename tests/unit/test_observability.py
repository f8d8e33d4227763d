"""Health checks over a real socket, log context in JSON lines, and metrics read from librdkafka statistics."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from worker import logs
from worker.health import Cached, Health, Heartbeat, assignment_check
from worker.observability import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_heartbeat_fails_liveness_only_after_the_allowed_silence() -> None:
    clock = Clock()
    beat = Heartbeat(30, clock)
    clock.now += 29
    assert beat.check()[0]
    clock.now += 2
    ok, detail = beat.check()
    assert not ok and "31.0s ago" in detail
    beat.beat()
    assert beat.check()[0]


def test_a_cached_check_runs_once_per_ttl_and_turns_exceptions_into_failures() -> None:
    clock = Clock()
    calls: list[int] = []

    def flaky() -> tuple[bool, str]:
        calls.append(1)
        raise ConnectionError("refused")

    check = Cached(flaky, ttl_s=1.0, clock=clock)
    assert check() == (False, "ConnectionError: refused") and check() == (False, "ConnectionError: refused")
    assert len(calls) == 1
    clock.now += 1.0
    check()
    assert len(calls) == 2


class FakeConsumer:
    assignment: set[tuple[str, int]] = set()


@pytest.fixture
def served() -> Iterator[tuple[Health, FakeConsumer, str]]:
    health, consumer = Health(), FakeConsumer()
    health.liveness("ingest", lambda: (True, "beating"))
    health.readiness("client-ingest partitions", assignment_check(consumer))
    port = health.serve("127.0.0.1", 0)
    yield health, consumer, f"http://127.0.0.1:{port}"
    health.close()


def fetch(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}") if exc.code != 404 else {}


def test_readyz_is_503_until_partitions_are_assigned_while_healthz_is_200(served: Any) -> None:
    _, consumer, url = served
    status, body = fetch(url + "/readyz")
    assert status == 503 and "no partitions assigned" in body["checks"]["client-ingest partitions"]["detail"]
    assert fetch(url + "/healthz")[0] == 200
    consumer.assignment = {("salesforce.cdc.account", 0), ("salesforce.cdc.account", 2)}
    status, body = fetch(url + "/readyz")
    assert status == 200 and body["checks"]["client-ingest partitions"]["detail"].startswith("2 partition(s)")
    assert fetch(url + "/metrics")[0] == 404


def test_every_log_line_inside_a_context_carries_its_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("test.context")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with logs.context(correlation_id="corr-1", causation_id="cause-1", client_id="001A"):
            logger.info("inside")
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (inside["correlation_id"], inside["causation_id"], inside["client_id"]) == ("corr-1", "cause-1", "001A")
    assert "correlation_id" not in outside


def gauge(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    data = reader.get_metrics_data()
    found: dict[tuple[tuple[str, Any], ...], float] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[tuple(sorted(point.attributes.items()))] = point.value
    return found


def test_consumer_lag_comes_from_librdkafka_statistics_of_owned_partitions_only() -> None:
    reader = InMemoryMetricReader()
    metrics = Metrics([reader])
    on_stats = metrics.consumer_stats("client-ingest")
    on_stats(json.dumps({"topics": {"cdc": {"partitions": {
        "0": {"consumer_lag": 12, "fetch_state": "active"},
        "1": {"consumer_lag": -1, "fetch_state": "active"},  # unknown yet
        "2": {"consumer_lag": 7, "fetch_state": "none"},  # not ours
        "-1": {"consumer_lag": 0, "fetch_state": "none"},  # librdkafka's unassigned pseudo-partition
    }}}}))
    assert gauge(reader, "worker_consumer_lag") == {
        (("group", "client-ingest"), ("partition", 0), ("topic", "cdc")): 12}
    on_stats(json.dumps({"topics": {"cdc": {"partitions": {"0": {"consumer_lag": 0, "fetch_state": "active"}}}}}))
    assert list(gauge(reader, "worker_consumer_lag").values()) == [0]
    on_stats("not json")  # ignored, the last figures stay
    assert list(gauge(reader, "worker_consumer_lag").values()) == [0]


def test_circuit_state_is_a_gauge_of_the_breaker() -> None:
    reader = InMemoryMetricReader()
    metrics = Metrics([reader])
    state = {"now": "closed"}
    metrics.watch_circuit("salesforce", lambda: state["now"])
    assert gauge(reader, "worker_circuit_state") == {(("circuit", "salesforce"),): 0}
    state["now"] = "open"
    assert gauge(reader, "worker_circuit_state") == {(("circuit", "salesforce"),): 2}
