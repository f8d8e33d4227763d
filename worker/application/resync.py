"""Resynchronizer: the use case behind the resync role. It reads from Salesforce the clients CDC cannot be trusted
for (gaps, unknown clients, dead-lettered changes, an operator's request) and every Account for a full resync
(overflow, wildcard ids), and applies what it read as the truth, field by field:

- a request is claimed by one worker (a lease), so replicas never read the same client at once;
- a read replaces the fields it covered and keeps the others (status, ``extra``, a person account's name);
- a record read before a change that ingest applied meanwhile is never applied: it is read again;
- completing a request removes only the generation that was claimed: one renewed meanwhile stays;
- a full resync goes page by page through one query job; each page commits with its cursor, so a restarted
  worker resumes after the last page; clients the scan did not see are then read one by one (gone = deleted);
- a read Salesforce refuses for one client counts an attempt for that client only (backoff, then failing);
  an unavailable Salesforce or refused credentials release the claims and propagate to the role, which waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.application.errors import ConcurrencyConflict, SourceRefused, TransientFailure
from worker.application.handlers import to_details
from worker.application.ports import (
    ClaimedResync,
    ClientSource,
    FetchedClient,
    FullResync,
    ResyncQueue,
    ScanProgress,
)
from worker.application.unit_of_work import ClientBatch
from worker.domain import StatusRule


@dataclass(frozen=True)
class ResyncPolicy:
    batch_size: int = 200
    lease_s: float = 120.0
    max_attempts: int = 8
    backoff_s: float = 5.0
    failing_retry_s: float = 3600.0
    conflict_retries: int = 5
    extra_fields_ttl_s: float = 300.0


@dataclass
class StepReport:
    """What one step did. ``waiting``: a query job is still being prepared (poll again after a pause)."""

    resynced: int = 0
    changed: int = 0
    refetch: int = 0
    failed: int = 0
    queued: int = 0
    pages: int = 0
    completed_full: int = 0
    waiting: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def worked(self) -> bool:
        return bool(self.resynced or self.refetch or self.failed or self.queued or self.pages
                    or self.completed_full)


class Resynchronizer:
    def __init__(
        self,
        queue: ResyncQueue,
        source: ClientSource,
        new_batch: Callable[[], ClientBatch],
        rule: StatusRule,
        worker_id: str,
        policy: ResyncPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._source = source
        self._new_batch = new_batch
        self._rule = rule
        self._worker = worker_id
        self._policy = policy or ResyncPolicy()
        self._clock = clock
        self._extra: tuple[float, list[str]] | None = None

    def step(self) -> StepReport:
        """One unit of work: a page of a full resync when one is claimed, else one batch of client reads."""
        full = self._queue.claim_full_resync(self._worker, self._policy.lease_s)
        if full is not None:
            return self._full_step(full)
        return self._read_clients()

    # -- clients by id ----------------------------------------------------------------------------------------

    def _read_clients(self) -> StepReport:
        report = StepReport()
        claimed = self._queue.claim_resyncs(self._worker, self._policy.batch_size, self._policy.lease_s)
        if not claimed:
            return report
        ids = [c.client_id for c in claimed]
        try:
            batch = self._new_batch()
            batch.preload(ids)
            own_extra = {key for cid in ids for key in batch.get(cid).details.extra}
            fetched = self._fetch_isolating(ids, self._extra_fields(own_extra), report)
            readable = [c for c in claimed if c.client_id in fetched]
            if readable:
                self._apply_reads(batch, readable, fetched, report)
        except BaseException:
            self._queue.release(ids, self._worker)  # only claims still held: completed requests are gone
            raise
        return report

    def _fetch_isolating(self, ids: Sequence[str], extra: Collection[str],
                         report: StepReport) -> dict[str, FetchedClient]:
        """Read ``ids``; when Salesforce refuses the request, read them one by one so that only the clients it
        refuses count a failed attempt."""
        try:
            return self._source.fetch_clients(ids, extra)
        except SourceRefused as exc:
            if len(ids) == 1:
                self._failed(ids, exc, report)
                return {}
        fetched: dict[str, FetchedClient] = {}
        for client_id in ids:
            try:
                fetched.update(self._source.fetch_clients([client_id], extra))
            except SourceRefused as exc:
                self._failed([client_id], exc, report)
        return fetched

    def _failed(self, ids: Sequence[str], exc: BaseException, report: StepReport) -> None:
        p = self._policy
        error = f"{type(exc).__name__}: {exc}"
        self._queue.record_failure(ids, self._worker, error, p.max_attempts, p.backoff_s, p.failing_retry_s)
        report.failed += len(ids)
        report.errors.append(f"{', '.join(ids)}: {error}")

    def _apply_reads(self, batch: ClientBatch, claimed: list[ClaimedResync], fetched: dict[str, FetchedClient],
                     report: StepReport) -> None:
        for attempt in range(self._policy.conflict_retries + 1):
            if attempt:
                batch = self._new_batch()
                batch.preload(c.client_id for c in claimed)
            stale: list[str] = []
            changed = 0
            for claim in claimed:
                record = fetched[claim.client_id]
                if batch.get(claim.client_id).fetched_before_last_change(record.last_modified_ms):
                    stale.append(claim.client_id)  # a change newer than the record was applied: read again
                    continue
                changed += self._apply(batch, record, claim.reason)
                batch.resync_completed(claim.client_id, claim.generation)
            try:
                batch.commit()
            except ConcurrencyConflict:
                continue
            self._queue.release(stale, self._worker)
            report.resynced += len(claimed) - len(stale)
            report.refetch += len(stale)
            report.changed += changed
            return
        raise TransientFailure(f"resync still conflicting after {self._policy.conflict_retries} retries")

    def _apply(self, batch: ClientBatch, record: FetchedClient, reason: str) -> int:
        client = batch.get(record.client_id)
        details = to_details(record.data) if record.data is not None else None
        events = client.resynchronize(details, record.last_modified_ms, record.deleted, self._rule,
                                      fetched=record.fetched or None)
        metadata: dict[str, Any] = {
            "command": "ResyncClients",
            "correlation_id": f"resync:{record.client_id}",
            "causation_id": reason,
            "resync_reason": reason,
        }
        if record.merged_into:
            metadata["merged_into"] = record.merged_into
            batch.request_resync(record.merged_into, f"{record.client_id} was merged into it")
        return batch.record(client, events, metadata)

    def _extra_fields(self, own: Collection[str] = ()) -> list[str]:
        now = self._clock()
        if self._extra is None or now - self._extra[0] > self._policy.extra_fields_ttl_s:
            self._extra = (now, self._queue.seen_extra_fields())
        return sorted(set(self._extra[1]) | set(own))

    # -- every Account ----------------------------------------------------------------------------------------

    def _full_step(self, full: FullResync) -> StepReport:
        report = StepReport()
        try:
            if full.phase == "pending" or full.scan_id is None:
                scan_id = self._source.start_scan(self._extra_fields())
                self._queue.start_scan(full.request_id, scan_id)
                report.queued += 1
            elif full.phase == "scanning":
                self._scan_page(full, full.scan_id, report)
            else:
                self._sweep(full, report)
        except SourceRefused as exc:  # the job failed or was refused: start over with a new one
            self._queue.fail_full_resync(full.request_id, self._worker, f"{type(exc).__name__}: {exc}",
                                         self._policy.backoff_s, restart=True)
            report.failed += 1
            report.errors.append(f"full resync {full.request_id}: {exc}")
        except BaseException as exc:
            self._queue.fail_full_resync(full.request_id, self._worker, f"{type(exc).__name__}: {exc}", 0.0,
                                         restart=False)
            raise
        return report

    def _scan_page(self, full: FullResync, scan_id: str, report: StepReport) -> None:
        page = self._source.scan_page(scan_id, full.cursor)
        if page is None:
            report.waiting = True
            return
        reason = f"full resync {full.request_id}: {full.reason}"
        ids = [record.client_id for record in page.clients]
        for _ in range(self._policy.conflict_retries + 1):
            batch = self._new_batch()
            batch.preload(ids)
            changed = 0
            for record in page.clients:
                if batch.get(record.client_id).fetched_before_last_change(record.last_modified_ms):
                    batch.request_resync(record.client_id, reason + " (record older than a change applied since)")
                    report.refetch += 1
                    continue
                changed += self._apply(batch, record, reason)
            batch.scan_progressed(ScanProgress(full.request_id, scan_id, full.cursor, page.cursor, ids, len(ids)))
            try:
                batch.commit()
            except ConcurrencyConflict:
                report.refetch = 0
                continue
            report.pages += 1
            report.resynced += len(ids) - report.refetch
            report.changed += changed
            return
        raise TransientFailure(f"full resync page still conflicting after {self._policy.conflict_retries} retries")

    def _sweep(self, full: FullResync, report: StepReport) -> None:
        """Clients the scan did not see (hard-deleted, purged, or created after the job's snapshot) are read one
        by one: that read tells gone from new."""
        unseen = self._queue.unseen_clients(full.request_id, 5000)
        if unseen:
            report.queued += self._queue.request(unseen, f"full resync {full.request_id}: not seen by the scan")
            return
        self._queue.complete_full_resync(full.request_id)
        report.completed_full += 1
