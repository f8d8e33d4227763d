"""Metrics through the OpenTelemetry SDK; one facade so the rest of the code names what it measures."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader

log = logging.getLogger("worker.metrics")


class Metrics:
    def __init__(self, readers: Sequence[MetricReader] = ()) -> None:
        self.provider = MeterProvider(metric_readers=list(readers))
        meter: Meter = self.provider.get_meter("salesforce-cdc-worker")
        self.messages = meter.create_counter("worker_messages", description="messages consumed, by topic and outcome")
        self.dead_letters = meter.create_counter("worker_dead_letters", description="dead letters by topic, stage")
        self.commands = meter.create_counter("worker_commands", description="commands by type and outcome")
        self.command_seconds = meter.create_histogram("worker_command_duration", unit="s")
        self.events_appended = meter.create_counter("worker_events_appended")
        self.skipped = meter.create_counter("worker_messages_skipped", description="skipped by reason")
        self.published = meter.create_counter("worker_events_published")
        self.projected = meter.create_counter("worker_events_projected")
        self.queries = meter.create_histogram("worker_query_duration", unit="s")
        self.events_replayed = meter.create_counter("worker_aggregate_events_replayed",
                                                    description="events replayed to load aggregates")
        self.snapshot_hits = meter.create_counter("worker_snapshot_hits")
        self.load_seconds = meter.create_histogram("worker_aggregate_load_duration", unit="s")

    def traced(self, command: Any, ctx: Any, call_next: Any) -> int:
        """Command-bus middleware: one span per command, joined to the CDC message's W3C traceparent."""
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        change = getattr(command, "change", None)
        carrier = {"traceparent": change.traceparent} if change is not None and change.traceparent else {}
        parent = TraceContextTextMapPropagator().extract(carrier)
        tracer = trace.get_tracer("salesforce-cdc-worker")
        with tracer.start_as_current_span(f"command {type(command).__name__}", context=parent) as span:
            span.set_attribute("client.id", str(getattr(command, "client_id", "")))
            if change is not None:
                span.set_attribute("salesforce.transaction_key", change.transaction_key)
            events: int = call_next(command, ctx)
            span.set_attribute("events.appended", events)
            return events

    def record_command(self, command_type: str, outcome: str, seconds: float, events: int) -> None:
        attrs = {"command": command_type, "outcome": outcome}
        self.commands.add(1, attrs)
        self.command_seconds.record(seconds, attrs)
        if events:
            self.events_appended.add(events, {"command": command_type})

    def ingest_batch(self, topic: str, batch: Sequence[Any], outcome: Any) -> None:
        self.messages.add(len(batch), {"topic": topic})
        for letter in outcome.dead_letters:
            self.dead_letters.add(1, {"topic": topic, "stage": letter.stage.value})
        self.events_replayed.add(outcome.events_replayed)
        self.snapshot_hits.add(outcome.snapshot_hits)
        self.load_seconds.record(outcome.load_seconds)
        for reason, count in outcome.skipped.items():
            self.skipped.add(count, {"topic": topic, "reason": reason})

    def relay_published(self, rows: Sequence[Any]) -> None:
        if rows:
            self.published.add(len(rows))

    def projector_batch(self, topic: str, batch: Sequence[Any], outcome: Any) -> None:
        self.messages.add(len(batch), {"topic": topic})
        for verdict, count in outcome.verdicts.items():
            self.projected.add(count, {"verdict": verdict})
        for letter in outcome.dead_letters:
            self.dead_letters.add(1, {"topic": topic, "stage": letter.stage.value})
