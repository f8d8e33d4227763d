"""Traces through the OpenTelemetry SDK: a parent-based ratio sampler, and the command-bus middleware that opens
a span per command only when it is sampled (an unsampled command costs a sampling decision, nothing more)."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from worker import logs

log = logging.getLogger("worker.tracing")

OTLP_MISSING = ("WORKER_OBSERVABILITY__OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
                "pip install 'salesforce-cdc-worker[otlp]'")
DEFAULT_SAMPLE_RATIO = 0.01
_PROPAGATOR = TraceContextTextMapPropagator()


def trace_sample_ratio(observability: Any) -> float:
    """The root sampling ratio: as set, else 1 % with an exporter and 0 without (spans would go nowhere)."""
    if observability.trace_sample_ratio is not None:
        return float(observability.trace_sample_ratio)
    return DEFAULT_SAMPLE_RATIO if observability.otlp_endpoint else 0.0


def start_tracing(observability: Any) -> bool:
    """The SDK's tracer provider with a parent-based ratio sampler: a CDC message whose traceparent is sampled is
    traced, others at the ratio. Spans are exported over OTLP when an endpoint is set. Without an exporter and
    with no ratio set, tracing stays off (no provider: the command middleware passes commands straight through,
    and each event carries the CDC message's own traceparent, if any). Returns whether tracing is on."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    ratio = trace_sample_ratio(observability)
    if not observability.otlp_endpoint and observability.trace_sample_ratio is None:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": "salesforce-cdc-worker"}),
                              sampler=ParentBased(TraceIdRatioBased(ratio)))
    if observability.otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise RuntimeError(OTLP_MISSING) from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=observability.otlp_endpoint)))
    trace.set_tracer_provider(provider)
    log.info("traces sampled at %g (parent-based)%s", ratio, "" if observability.otlp_endpoint else
             ", not exported: they only carry the context along")
    return True


def _log_fields(command: Any) -> dict[str, Any]:
    change = getattr(command, "change", None)
    fields: dict[str, Any] = {"client_id": getattr(command, "client_id", None)}
    if change is not None:
        fields.update(correlation_id=change.correlation_id, causation_id=change.causation_id,
                      source=f"{change.source_topic}[{change.source_partition}]@{change.source_offset}")
    return fields


class CommandTracing:
    """Command-bus middleware: a span per command, a child of the CDC message's W3C traceparent (or the root of a
    new trace); a sampled command's events carry its span's traceparent, so the projector's span joins the trace.
    An unsampled command costs a sampling decision: no attributes, no copy of the command; with no tracer provider
    set (tracing off) not even that. Log lines inside carry the correlation and causation ids and the client id,
    computed only when a line is written."""

    def __init__(self, provider: Any = None) -> None:
        """`provider`: a tracer provider; by default the global one, looked up at the first command."""
        self._provider = provider
        self._tracer: Any = None
        self._resolved = False

    def _resolve(self) -> Any:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        provider = self._provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer("salesforce-cdc-worker") if isinstance(provider, TracerProvider) else None
        self._resolved = True
        return self._tracer

    def __call__(self, command: Any, ctx: Any, call_next: Any) -> int:
        tracer = self._tracer if self._resolved else self._resolve()
        token = logs.push_lazy(partial(_log_fields, command))
        try:
            if tracer is None:
                return int(call_next(command, ctx))
            change = getattr(command, "change", None)
            parent = _PROPAGATOR.extract({"traceparent": change.traceparent}) if (
                change is not None and change.traceparent) else None
            span = tracer.start_span(f"command {type(command).__name__}", context=parent)
            attached = otel_context.attach(set_span_in_context(span))
            try:
                if not span.is_recording():
                    return int(call_next(command, ctx))
                return self._recorded(span, command, change, ctx, call_next)
            finally:
                otel_context.detach(attached)
                span.end()
        finally:
            logs.pop_lazy(token)

    @staticmethod
    def _recorded(span: Any, command: Any, change: Any, ctx: Any, call_next: Any) -> int:
        span.set_attribute("client.id", str(getattr(command, "client_id", None) or ""))
        if change is not None:
            span.set_attribute("salesforce.transaction_key", change.transaction_key)
            outgoing: dict[str, str] = {}
            _PROPAGATOR.inject(outgoing)
            if outgoing.get("traceparent") and outgoing["traceparent"] != change.traceparent:
                command = command.model_copy(
                    update={"change": change.model_copy(update={"traceparent": outgoing["traceparent"]})})
        try:
            events = int(call_next(command, ctx))
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        span.set_attribute("events.appended", events)
        return events
