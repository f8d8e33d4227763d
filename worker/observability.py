"""Metrics and traces through the OpenTelemetry SDK; one facade so the rest of the code names what it measures.

Metrics are exported on a Prometheus endpoint (`/metrics` on WORKER_OBSERVABILITY__METRICS_PORT, 0 = off), or
pushed over OTLP when WORKER_OBSERVABILITY__OTLP_ENDPOINT is set (the `otlp` extra installs the exporter).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader

from worker.tracing import OTLP_MISSING, CommandTracing

log = logging.getLogger("worker.metrics")

CIRCUIT_VALUES = {"closed": 0, "half-open": 1, "open": 2}


class Metrics:
    def __init__(self, readers: Sequence[MetricReader] = ()) -> None:
        self.provider = MeterProvider(metric_readers=list(readers))
        meter = MeterInventory(self.provider.get_meter("salesforce-cdc-worker"))
        self._meter = meter
        self._lock = threading.Lock()
        self._tally_lock = threading.Lock()
        self._tally: dict[tuple[str, str], list[Any]] = {}
        self.traced = CommandTracing()  # the bus middleware (bootstrap puts it first)
        self.messages = meter.create_counter("worker_messages", description="messages consumed, by topic and outcome")
        self.dead_letters = meter.create_counter("worker_dead_letters", description="dead letters by topic, stage")
        self.commands = meter.create_counter("worker_commands", description="commands by type and outcome")
        self.command_seconds = meter.create_histogram(
            "worker_command_duration", unit="s", description="mean duration of a batch's commands, by type and outcome")
        self.events_appended = meter.create_counter("worker_events_appended")
        self.skipped = meter.create_counter("worker_messages_skipped", description="skipped by reason")
        self.published = meter.create_counter("worker_events_published")
        self.projected = meter.create_counter("worker_events_projected", description="by verdict")
        self.projection_gaps = meter.create_counter("worker_projection_gaps",
                                                    description="events whose version left a gap (dead-lettered)")
        self.queries = meter.create_histogram("worker_query_duration", unit="s")
        self.events_replayed = meter.create_counter("worker_aggregate_events_replayed",
                                                    description="events replayed to load aggregates")
        self.snapshot_hits = meter.create_counter("worker_snapshot_hits")
        self.load_seconds = meter.create_histogram("worker_aggregate_load_duration", unit="s")
        self.retries = meter.create_counter("worker_retries", description="transient failures retried, by stage")
        self.salesforce_calls = meter.create_counter("worker_salesforce_calls", description="by call and outcome")
        self.salesforce_seconds = meter.create_histogram("worker_salesforce_call_duration", unit="s")
        self.relay_delay = meter.create_histogram(
            "worker_relay_delay", unit="s", description="from the event's commit to its publication")
        # gauges read at collection time from what the loops last saw
        self._lag: dict[tuple[str, str, int], int] = {}
        self._backlog: tuple[int, float | None] = (0, None)
        self._newest_projected_ms: int | None = None
        self._circuits: dict[str, Callable[[], str]] = {}
        self._durable: bool | None = None
        meter.create_observable_gauge("worker_consumer_lag", callbacks=[self._observe_lag],
                                      description="messages behind the end, per group, topic and partition "
                                                  "(librdkafka statistics)")
        self._parked = 0
        meter.create_observable_gauge("worker_outbox_parked", callbacks=[lambda _o: [Observation(self._parked)]],
                                      description="streams whose next outbox row cannot be published (see the log)")
        meter.create_observable_gauge("worker_outbox_backlog", callbacks=[self._observe_backlog],
                                      description="outbox rows not yet published")
        meter.create_observable_gauge("worker_outbox_oldest_age", unit="s", callbacks=[self._observe_backlog_age],
                                      description="age of the oldest unpublished outbox row")
        meter.create_observable_gauge("worker_projector_freshness", unit="s", callbacks=[self._observe_freshness],
                                      description="now minus the Salesforce commit time of the newest projected "
                                                  "change")
        meter.create_observable_gauge("worker_circuit_state", callbacks=[self._observe_circuits],
                                      description="0 closed, 1 half-open, 2 open")
        meter.create_observable_gauge("worker_database_durable", callbacks=[self._observe_durable],
                                      description="1 when PostgreSQL runs with fsync, synchronous_commit and "
                                                  "full_page_writes on, 0 when acknowledged commits can be lost")

    # -- command side ------------------------------------------------------------------------------------------

    def record_command(self, command_type: str, outcome: str, seconds: float, events: int) -> None:
        """Tallied in memory (a few dict operations per command); the instruments see one update per batch."""
        key = (command_type, outcome)
        with self._tally_lock:
            tally = self._tally.get(key)
            if tally is None:
                self._tally[key] = [1, seconds, events]
            else:
                tally[0] += 1
                tally[1] += seconds
                tally[2] += events

    def flush_commands(self) -> None:
        """The tallied commands into the instruments: a count per type and outcome, and the batch's mean duration
        per type and outcome into the duration histogram."""
        with self._tally_lock:
            tally, self._tally = self._tally, {}
        for (command_type, outcome), (count, seconds, events) in tally.items():
            attrs = {"command": command_type, "outcome": outcome}
            self.commands.add(count, attrs)
            self.command_seconds.record(seconds / count, attrs)
            if events:
                self.events_appended.add(events, {"command": command_type})

    def ingest_batch(self, topic: str, batch: Sequence[Any], outcome: Any) -> None:
        self.flush_commands()
        self.messages.add(len(batch), {"topic": topic})
        for letter in outcome.dead_letters:
            self.dead_letters.add(1, {"topic": topic, "stage": letter.stage.value})
        self.events_replayed.add(outcome.events_replayed)
        self.snapshot_hits.add(outcome.snapshot_hits)
        self.load_seconds.record(outcome.load_seconds)
        for reason, count in outcome.skipped.items():
            self.skipped.add(count, {"topic": topic, "reason": reason})

    def retried(self, what: str) -> Callable[[BaseException, int], None]:
        def count(error: BaseException, _attempt: int) -> None:
            self.retries.add(1, {"stage": what, "error": type(error).__name__})

        return count

    def salesforce_call(self, call: str, outcome: str, seconds: float) -> None:
        attrs = {"call": call, "outcome": outcome}
        self.salesforce_calls.add(1, attrs)
        self.salesforce_seconds.record(seconds, attrs)

    def watch_circuit(self, name: str, state: Callable[[], str]) -> None:
        self._circuits[name] = state

    def database_durable(self, durable: bool) -> None:
        self._durable = durable

    def prometheus_names(self) -> set[str]:
        """The series names `/metrics` shows for these instruments (the exporter's suffixes included): the
        deployment's dashboard and alert rules are checked against them."""
        return self._meter.prometheus_names()

    # -- relay -------------------------------------------------------------------------------------------------

    def relay_published(self, rows: Sequence[Any]) -> None:
        if not rows:
            return
        self.published.add(len(rows))
        now = time.time()
        for row in rows:
            created = getattr(row, "created_at", None)
            if created is not None:
                self.relay_delay.record(max(0.0, now - created.timestamp()))

    def outbox_parked(self, streams: int) -> None:
        self._parked = streams

    def outbox_backlog(self, count: int, oldest: Any) -> None:
        self._backlog = (count, oldest.timestamp() if oldest is not None else None)

    # -- projector ---------------------------------------------------------------------------------------------

    def projector_batch(self, topic: str, batch: Sequence[Any], outcome: Any) -> None:
        self.messages.add(len(batch), {"topic": topic})
        for verdict, count in outcome.verdicts.items():
            self.projected.add(count, {"verdict": verdict})
            if verdict == "gap":
                self.projection_gaps.add(count)
        for letter in outcome.dead_letters:
            self.dead_letters.add(1, {"topic": topic, "stage": letter.stage.value})
        newest = getattr(outcome, "newest_change_ms", None)
        if newest:
            with self._lock:
                self._newest_projected_ms = max(self._newest_projected_ms or 0, newest)

    # -- consumer statistics -----------------------------------------------------------------------------------

    def consumer_stats(self, group: str) -> Callable[[str], None]:
        """A librdkafka `stats_cb`: per-partition consumer lag of the partitions this consumer owns."""

        def on_stats(raw: str) -> None:
            try:
                stats = json.loads(raw)
            except ValueError:
                return
            seen: dict[tuple[str, str, int], int] = {}
            for topic, info in (stats.get("topics") or {}).items():
                for part, p in (info.get("partitions") or {}).items():
                    lag = p.get("consumer_lag")
                    if part == "-1" or lag is None or lag < 0 or p.get("fetch_state") in ("none", "stopped"):
                        continue
                    seen[(group, topic, int(part))] = int(lag)
            with self._lock:
                for key in [k for k in self._lag if k[0] == group]:
                    del self._lag[key]
                self._lag.update(seen)

        return on_stats

    # -- observable callbacks ----------------------------------------------------------------------------------

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            items = list(self._lag.items())
        return [Observation(lag, {"group": g, "topic": t, "partition": p}) for (g, t, p), lag in items]

    def _observe_backlog(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._backlog[0])]

    def _observe_backlog_age(self, _options: CallbackOptions) -> Iterable[Observation]:
        oldest = self._backlog[1]
        return [Observation(max(0.0, time.time() - oldest) if oldest is not None else 0.0)]

    def _observe_freshness(self, _options: CallbackOptions) -> Iterable[Observation]:
        newest = self._newest_projected_ms
        return [] if newest is None else [Observation(max(0.0, time.time() - newest / 1000))]

    def _observe_durable(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [] if self._durable is None else [Observation(int(self._durable))]

    def _observe_circuits(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(CIRCUIT_VALUES.get(state(), -1), {"circuit": name})
                for name, state in list(self._circuits.items())]


class MeterInventory:
    """A meter that keeps a list of the instruments made through it (name, kind, unit), to name their series."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self.made: list[tuple[str, str, str]] = []

    def __getattr__(self, method: str) -> Any:
        create = getattr(self._meter, method)

        def made(name: str, *args: Any, **kwargs: Any) -> Any:
            self.made.append((name, method, kwargs.get("unit", "")))
            return create(name, *args, **kwargs)

        return made

    def prometheus_names(self) -> set[str]:
        names: set[str] = set()
        for name, method, unit in self.made:
            base = name + ("_seconds" if unit == "s" else "")
            if method == "create_counter":
                names.add(base + "_total")
            elif method == "create_histogram":
                names |= {base + "_bucket", base + "_sum", base + "_count"}
            else:
                names.add(base)
        return names


def start_metrics(observability: Any) -> Metrics:
    """Metrics exported as configured: Prometheus `/metrics` on the metrics port (0: none), OTLP when an
    endpoint is set."""
    readers: list[MetricReader] = []
    if observability.metrics_port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        readers.append(PrometheusMetricReader())
        start_http_server(observability.metrics_port, addr=observability.bind_address)
        log.info("metrics on http://%s:%d/metrics", observability.bind_address, observability.metrics_port)
    if observability.otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        except ImportError:
            raise RuntimeError(OTLP_MISSING) from None
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=observability.otlp_endpoint)))
    return Metrics(readers)
