"""Metrics of the resync role: the backlog and its age, failing clients, reads by outcome, and the Salesforce
API requests left today. Gauges read what the role last saw; `worker resync status` shows the same."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation


class ResyncMetrics:
    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._status: tuple[int, float, int] = (0, 0.0, 0)
        self._usage: tuple[int, int] | None = None
        self._enabled = 1
        self.reads = meter.create_counter("worker_resyncs", description="client reads by outcome: applied, "
                                          "changed, refetch, failed")
        self.pages = meter.create_counter("worker_resync_pages", description="full-resync pages applied")
        meter.create_observable_gauge("worker_resync_backlog", callbacks=[self._backlog],
                                      description="clients waiting for a read from Salesforce")
        meter.create_observable_gauge("worker_resync_oldest_age", unit="s", callbacks=[self._oldest],
                                      description="age of the oldest resync request")
        meter.create_observable_gauge("worker_resync_failing", callbacks=[self._failing],
                                      description="clients whose reads failed max_attempts times")
        meter.create_observable_gauge("worker_resync_enabled", callbacks=[self._observe_enabled],
                                      description="1 when the resync role can read Salesforce, 0 when disabled")
        meter.create_observable_gauge("worker_salesforce_api_remaining", callbacks=[self._remaining],
                                      description="daily API requests left (Sforce-Limit-Info)")

    def step(self, report: Any) -> None:
        for outcome, count in (("applied", report.resynced), ("changed", report.changed),
                               ("refetch", report.refetch), ("failed", report.failed)):
            if count:
                self.reads.add(count, {"outcome": outcome})
        if report.pages:
            self.pages.add(report.pages)

    def status(self, status: Any) -> None:
        with self._lock:
            self._status = (status.backlog, status.oldest_age_s or 0.0, status.failing_count)

    def usage(self, usage: Any) -> None:
        if usage is not None:
            self._usage = (usage.used, usage.limit)

    def enabled(self, on: bool) -> None:
        self._enabled = int(on)

    def _backlog(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._status[0])]

    def _oldest(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._status[1])]

    def _failing(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._status[2])]

    def _observe_enabled(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._enabled)]

    def _remaining(self, _: CallbackOptions) -> Iterable[Observation]:
        return [] if self._usage is None else [Observation(max(0, self._usage[1] - self._usage[0]))]
