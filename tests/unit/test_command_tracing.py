"""What the command middleware costs: an unsampled command gets a sampling decision and nothing else (no
attributes, no copy); a sampled one carries its span's traceparent to its events; metrics are tallied per batch."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NoOpTracerProvider

from worker import logs
from worker.config import ObservabilitySettings
from worker.observability import Metrics
from worker.tracing import CommandTracing, trace_sample_ratio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
UNSAMPLED = f"00-{TRACE_ID}-00f067aa0ba902b7-00"
SAMPLED = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Touched(Exception):
    pass


class SpyChange:
    """A change whose every field but the traceparent (needed for the sampling decision) refuses to be read."""

    def __init__(self, traceparent: str | None) -> None:
        self.traceparent = traceparent

    def __getattr__(self, name: str) -> Any:
        raise Touched(f"change.{name}")


class SpyCommand:
    def __init__(self, traceparent: str | None) -> None:
        self.change = SpyChange(traceparent)

    def __getattr__(self, name: str) -> Any:  # client_id, model_copy, ...
        raise Touched(f"command.{name}")


def provider(ratio: float) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    p = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p, exporter


@pytest.mark.parametrize("traceparent", [None, UNSAMPLED])
def test_an_unsampled_command_does_no_attribute_work_and_is_not_copied(traceparent: str | None) -> None:
    p, exporter = provider(0.0)
    seen: list[Any] = []
    command = SpyCommand(traceparent)
    assert CommandTracing(p)(command, None, lambda c, _ctx: seen.append(c) or 1) == 1
    assert seen == [command] and exporter.get_finished_spans() == ()


def test_with_tracing_off_a_command_passes_straight_through() -> None:
    command = SpyCommand(SAMPLED)
    assert CommandTracing(NoOpTracerProvider())(command, None, lambda c, _ctx: 2 if c is command else 0) == 2


def test_a_sampled_parent_is_followed_at_ratio_zero_and_its_events_carry_the_command_span(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from worker.application.commands import ChangeClientDetails, ChangeMetadata

    p, exporter = provider(0.0)
    change = ChangeMetadata(transaction_key="tx-1", sequence_number=1, commit_timestamp_ms=1, change_type="UPDATE",
                            source_topic="cdc", source_partition=2, source_offset=7, correlation_id="tx-1",
                            causation_id="cdc:2:7", traceparent=SAMPLED)
    command = ChangeClientDetails(client_id="001000000000001AAA", changes={"phone": "1"}, change=change)
    seen: list[Any] = []

    def handler(c: Any, _ctx: Any) -> int:
        logging.getLogger("test.tracing").warning("inside")
        seen.append(c)
        return 1

    formatter = logs.JsonFormatter()
    with caplog.at_level(logging.INFO, logger="test.tracing"):
        caplog.handler.addFilter(logs.ContextFilter())
        CommandTracing(p)(command, None, handler)
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["client.id"] == "001000000000001AAA"
    assert span.attributes["events.appended"] == 1
    assert seen[0].change.traceparent == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    line = json.loads(formatter.format(caplog.records[0]))
    assert (line["client_id"], line["correlation_id"], line["source"]) == ("001000000000001AAA", "tx-1", "cdc[2]@7")


def test_the_default_ratio_is_a_percent_with_an_exporter_and_nothing_without() -> None:
    assert trace_sample_ratio(ObservabilitySettings()) == 0.0
    assert trace_sample_ratio(ObservabilitySettings(otlp_endpoint="http://127.0.0.1:4318")) == 0.01
    assert trace_sample_ratio(ObservabilitySettings(trace_sample_ratio=1.0)) == 1.0


def test_command_metrics_are_tallied_and_reach_the_instruments_once_per_batch() -> None:
    reader = InMemoryMetricReader()
    metrics = Metrics([reader])
    for _ in range(3):
        metrics.record_command("RegisterClient", "ok", 0.002, 1)
    metrics.record_command("RegisterClient", "noop", 0.001, 0)

    def counts() -> dict[tuple[Any, ...], float]:
        data = reader.get_metrics_data()
        return {tuple(sorted(pt.attributes.items())): pt.value
                for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics for m in sm.metrics
                if m.name == "worker_commands" for pt in m.data.data_points}

    assert counts() == {}
    metrics.flush_commands()
    assert counts() == {(("command", "RegisterClient"), ("outcome", "ok")): 3,
                        (("command", "RegisterClient"), ("outcome", "noop")): 1}
