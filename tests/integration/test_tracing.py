"""One Salesforce change followed by its W3C trace id: from the CDC message's `traceparent` through the command
span, the stored event's metadata and the `client.events` headers into the projector's span; and a message of
the same trace that cannot be parsed keeps the trace in its dead-letter headers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.cdc_factory import CdcFactory
from tests.harness import consume_all, create_worker_topics, produce, rows, settings_for
from worker import bootstrap
from worker.config import ObservabilitySettings
from worker.roles.runtime import IdleClock, Stopper
from worker.tracing import start_tracing

A = "001000000000001AAA"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
NO_TRACE_ID = "0a0b0c0d0e0f10111213141516171819"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every trace sampled (ratio 1), spans kept in memory."""
    exporter = InMemorySpanExporter()
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        assert start_tracing(ObservabilitySettings(trace_sample_ratio=1.0))
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter


def run_all_roles(settings: object) -> None:
    app = bootstrap.bootstrap(settings)  # type: ignore[arg-type]
    try:
        assert bootstrap.ingest_loop(app, Stopper(), IdleClock(1.5)).run() == 0
        assert bootstrap.relay(app, Stopper(), IdleClock(1.5)).run() == 0
        assert bootstrap.projector_loop(app, Stopper(), IdleClock(1.5)).run() == 0
    finally:
        app.close()


def test_a_change_keeps_its_trace_from_the_cdc_message_to_the_projector_and_the_dlq(
    worker_env: dict[str, str], spans: InMemorySpanExporter
) -> None:
    settings = settings_for(worker_env)
    create_worker_topics(settings)
    k = settings.kafka
    traced = [("traceparent", TRACEPARENT.encode())]
    f = CdcFactory()
    produce(k.bootstrap_servers, k.cdc_topic, [f.create(A)], headers=traced)
    produce(k.bootstrap_servers, k.cdc_topic, [(A.encode(), b"{not a change")], headers=traced)
    produce(k.bootstrap_servers, k.cdc_topic, [f.create("001000000000002AAA")])  # no traceparent: a new trace
    spans.clear()
    run_all_roles(settings)

    ours = [s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == TRACE_ID]
    command = next(s for s in ours if s.name == "command RegisterClient")
    projected = next(s for s in ours if s.name == "project ClientRegistered")
    assert command.parent is not None and f"{command.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert projected.parent is not None and projected.parent.span_id == command.context.span_id

    stored = rows(settings.postgres.url.get_secret_value(),
                  "SELECT metadata->>'traceparent' FROM events_with_metadata WHERE stream_id = %s", (A,))
    assert stored == [(f"00-{TRACE_ID}-{command.context.span_id:016x}-01",)]
    published = [m for m in consume_all(k.bootstrap_servers, k.events_topic) if m.key() == A.encode()]
    assert dict(published[0].headers())["traceparent"].decode() == stored[0][0]

    letters = consume_all(k.bootstrap_servers, k.cdc_dlq_topic)
    assert [dict(m.headers())["traceparent"].decode() for m in letters] == [TRACEPARENT]

    # a change that came without a trace starts one, and the projector joins it
    other = [s for s in spans.get_finished_spans() if s.attributes.get("client.id") == "001000000000002AAA"]
    assert {s.name for s in other} == {"command RegisterClient", "project ClientRegistered"}
    assert len({s.context.trace_id for s in other}) == 1 and f"{other[0].context.trace_id:032x}" != TRACE_ID
