"""Reconciler: compares the read model with Salesforce and names the drift, by kind:

- ``missing``: Salesforce has a live record, the read model has no registered client for it;
- ``gone``: the read model has a live client, Salesforce has no record at all (not even in its recycle bin);
- ``deleted_mismatch``: one side says deleted, the other does not;
- ``field_diff``: both live, and fields the mapping maps (status and the ``extra`` keys Salesforce has included)
  differ.

A full reconcile reads every Account through one scan (the resync's Bulk query job); clients of the read model
the scan did not see are read by id (new since the scan's snapshot, deleted, or gone). An incremental one reads
the records modified since a time. A read-model row changed after the record's SystemModstamp is newer than the
read and is never drift. Repairs go through the resync queue; `repair_and_wait` waits for the resync role, then
compares those clients again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from worker.application.handlers import to_details
from worker.application.ports import ClientSource, FetchedClient
from worker.application.projection import ADDRESS_COLUMNS
from worker.domain import StatusRule


class DriftKind(StrEnum):
    MISSING = "missing"
    GONE = "gone"
    DELETED_MISMATCH = "deleted_mismatch"
    FIELD_DIFF = "field_diff"


@dataclass(frozen=True)
class Drift:
    client_id: str
    kind: DriftKind
    fields: tuple[str, ...] = ()


@dataclass
class DriftReport:
    compared: int = 0
    drifts: dict[str, Drift] = field(default_factory=dict)  # client id -> its drift

    def add(self, drift: Drift | None) -> None:
        if drift is not None:
            self.drifts[drift.client_id] = drift

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((k.value for k in DriftKind), 0)
        for drift in self.drifts.values():
            counts[drift.kind.value] += 1
        return counts

    def of_kind(self, kind: DriftKind) -> list[Drift]:
        return sorted((d for d in self.drifts.values() if d.kind is kind), key=lambda d: d.client_id)

    @property
    def ids(self) -> list[str]:
        return sorted(self.drifts)


class ReadModelView(Protocol):
    """The client read model as reconciliation reads it (rows keyed by column, as `client_summary` has them)."""

    def rows(self, client_ids: Collection[str]) -> dict[str, Mapping[str, Any]]: ...

    def client_ids(self, after: str | None, limit: int) -> list[str]:
        """Every client id of the read model, in order, a page after ``after``."""
        ...


class ChangedClients(Protocol):
    def changed_since(self, since_ms: int, extra_fields: Collection[str] = ()) -> list[FetchedClient]:
        """Every Account (deleted ones included) whose SystemModstamp is at or after ``since_ms``."""
        ...


class RepairQueue(Protocol):
    def request(self, client_ids: Collection[str], reason: str) -> int: ...

    def pending(self, client_ids: Collection[str]) -> set[str]:
        """Those of ``client_ids`` still waiting for a read."""
        ...


def compare(row: Mapping[str, Any] | None, record: FetchedClient, rule: StatusRule) -> Drift | None:
    """The drift between a read-model row and the record Salesforce has (None: they agree)."""
    cid = record.client_id
    if record.data is None:
        if record.last_modified_ms is None:  # Salesforce never had it, or purged it
            return Drift(cid, DriftKind.GONE) if _live(row) else None
        return Drift(cid, DriftKind.DELETED_MISMATCH) if _live(row) else None
    if row is None or not row.get("registered"):
        return Drift(cid, DriftKind.MISSING)
    if _newer_than(row, record.last_modified_ms):
        return None  # a change applied here after Salesforce's record was read: not drift
    if row.get("deleted"):
        return Drift(cid, DriftKind.DELETED_MISMATCH)
    details = to_details(record.data)
    differing = [path for path in sorted(record.fetched) if not _same(_expected(details, path), _column(row, path))]
    if rule.derive(details).value != row.get("status"):
        differing.append("status")
    return Drift(cid, DriftKind.FIELD_DIFF, tuple(differing)) if differing else None


def _live(row: Mapping[str, Any] | None) -> bool:
    return row is not None and bool(row.get("registered")) and not row.get("deleted")


def _newer_than(row: Mapping[str, Any], last_modified_ms: int | None) -> bool:
    changed = row.get("last_change_at")
    if last_modified_ms is None or not isinstance(changed, datetime):
        return False
    return int(changed.timestamp()) > last_modified_ms // 1000  # both clocks have one-second resolution


def _expected(details: Any, path: str) -> Any:
    try:
        return details.get(path)
    except LookupError:
        return None


def _column(row: Mapping[str, Any], path: str) -> Any:
    head, _, rest = path.partition(".")
    if head == "billing_address":
        return row.get(ADDRESS_COLUMNS.get(rest, ""))
    if head == "extra":
        return (row.get("extra") or {}).get(rest)
    return row.get(head)


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(expected == actual)
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)  # bigint / double precision columns
    return bool(expected == actual)


@dataclass(frozen=True)
class ReconcilePacing:
    page_size: int = 2000  # read-model ids and record reads per round
    scan_poll_s: float = 2.0  # a scan still being prepared is asked again after this
    wait_poll_s: float = 1.0
    wait_timeout_s: float = 600.0


class Reconciler:
    def __init__(
        self,
        source: ClientSource,
        changes: ChangedClients,
        view: ReadModelView,
        rule: StatusRule,
        extra_fields: Callable[[], list[str]] = list,
        pacing: ReconcilePacing | None = None,
        progress: Callable[[int], None] = lambda _compared: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._source = source
        self._changes = changes
        self._view = view
        self._rule = rule
        self._extra_fields = extra_fields
        self._pacing = pacing or ReconcilePacing()
        self._progress = progress
        self._sleep = sleep

    def full(self) -> DriftReport:
        """Every Account against every client: one scan, then the clients it did not see, read by id."""
        report = DriftReport()
        seen: set[str] = set()
        scan_id = self._source.start_scan(self._extra_fields())
        cursor: str | None = None
        while True:
            page = self._source.scan_page(scan_id, cursor)
            if page is None:
                self._sleep(self._pacing.scan_poll_s)
                continue
            self._compare(page.clients, report)
            seen.update(record.client_id for record in page.clients)
            if page.cursor is None:
                break
            cursor = page.cursor
        after: str | None = None
        while ids := self._view.client_ids(after, self._pacing.page_size):
            after = ids[-1]
            unseen = [cid for cid in ids if cid not in seen]
            if unseen:
                self._compare(self._source.fetch_clients(unseen, self._extra_fields()).values(), report)
        return report

    def incremental(self, since_ms: int) -> DriftReport:
        report = DriftReport()
        self._compare(self._changes.changed_since(since_ms, self._extra_fields()), report)
        return report

    def recheck(self, client_ids: Sequence[str]) -> DriftReport:
        report = DriftReport()
        for start in range(0, len(client_ids), self._pacing.page_size):
            chunk = client_ids[start : start + self._pacing.page_size]
            self._compare(self._source.fetch_clients(chunk, self._extra_fields()).values(), report)
        return report

    def repair_and_wait(self, found: DriftReport, queue: RepairQueue, reason: str, wait: bool,
                        clock: Callable[[], float] = time.monotonic) -> DriftReport:
        """Queue a read of every drifted client; with ``wait``, wait for the resync role to apply them and the
        read model to show them (compared again), up to the timeout. Returns the drift left (as found when not
        waiting)."""
        ids = found.ids
        if not ids:
            return found
        for start in range(0, len(ids), self._pacing.page_size):
            queue.request(ids[start : start + self._pacing.page_size], reason)
        if not wait:
            return found
        deadline = clock() + self._pacing.wait_timeout_s
        left = found
        pending = set(ids)
        while clock() < deadline:
            pending = queue.pending(ids)
            if not pending:
                left = self.recheck(ids)
                if not left.drifts:
                    return left
            self._sleep(self._pacing.wait_poll_s)
        return left if not pending else self.recheck(ids)

    def _compare(self, records: Iterable[FetchedClient], report: DriftReport) -> None:
        batch = list(records)
        rows = self._view.rows([r.client_id for r in batch])
        for record in batch:
            report.add(compare(rows.get(record.client_id), record, self._rule))
        report.compared += len(batch)
        self._progress(report.compared)
