"""Metrics of convergence on Salesforce: the last reconcile's drift by kind (what it found and what was left),
when it ran and how long it took, reconciles requested and not run yet, and offsets lost to retention.

A `worker reconcile` CronJob exits after its run, so its result is read back from the `reconcile_runs` table by
a long-running process (the resync role's status loop) and exported from there."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

KINDS = ("missing", "gone", "deleted_mismatch", "field_diff")


class ReconcileMetrics:
    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._run: Mapping[str, Any] | None = None
        self._pending = 0
        self.lost_offsets = meter.create_counter(
            "worker_retention_lost_offsets", description="input offsets that expired before ingest read them")
        meter.create_observable_gauge("worker_reconcile_drift", callbacks=[self._drift],
                                      description="clients drifting from Salesforce at the last reconcile, by kind "
                                                  "and stage (found, remaining)")
        meter.create_observable_gauge("worker_reconcile_last_run_timestamp", unit="s", callbacks=[self._last],
                                      description="when the last reconcile finished (Unix time)")
        meter.create_observable_gauge("worker_reconcile_duration", unit="s", callbacks=[self._duration],
                                      description="how long the last reconcile took")
        meter.create_observable_gauge("worker_reconcile_requests_pending", callbacks=[self._requests],
                                      description="reconciles requested (retention cliff) and not run yet")

    def lost(self, topic: str, partition: int, offsets: int) -> None:
        self.lost_offsets.add(offsets, {"topic": topic, "partition": str(partition)})

    def observe(self, last_run: Mapping[str, Any] | None, pending: int) -> None:
        with self._lock:
            self._run, self._pending = last_run, pending

    def _drift(self, _: CallbackOptions) -> Iterable[Observation]:
        run = self._run
        if run is None:
            return []
        return [Observation(int((run.get(stage) or {}).get(kind, 0)), {"kind": kind, "stage": stage})
                for stage in ("found", "remaining") for kind in KINDS]

    def _last(self, _: CallbackOptions) -> Iterable[Observation]:
        run = self._run
        return [] if run is None else [Observation(run["finished_at"].timestamp())]

    def _duration(self, _: CallbackOptions) -> Iterable[Observation]:
        run = self._run
        return [] if run is None else [Observation((run["finished_at"] - run["started_at"]).total_seconds())]

    def _requests(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self._pending)]
