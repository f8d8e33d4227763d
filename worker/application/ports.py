"""Ports: what the application needs from the outside, as small Protocols and plain records."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.application.commands import ClientData, Command


@dataclass(frozen=True)
class Decoded:
    """What one external message asks for: commands, or none with the reason it was skipped."""

    commands: list[Command]
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    stream_id: str
    version: int
    event_type: str
    schema_version: int
    payload: Mapping[str, Any]
    metadata: Mapping[str, Any]
    global_position: int | None = None


@dataclass(frozen=True)
class LoadedStream:
    stream_id: str
    snapshot: Mapping[str, Any] | None
    snapshot_version: int
    events: Sequence[StoredEvent]
    # the snapshot's schema version as the store read it (None: no snapshot, or a store that does not say)
    snapshot_schema_version: int | None = None


@dataclass(frozen=True)
class Snapshot:
    stream_id: str
    version: int
    schema_version: int
    state: Mapping[str, Any]


@dataclass
class BatchChanges:
    """Everything one consumed batch writes, in ONE transaction: events + outbox, snapshots, resync queue."""

    events: list[StoredEvent] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    resync_requested: dict[str, str] = field(default_factory=dict)
    # client id -> the generation of the claimed request: only that request is removed, a renewed one stays.
    resync_done: dict[str, int] = field(default_factory=dict)
    # (reason, source key): a request with the same key (a redelivered overflow) queues nothing new.
    full_resync_requested: list[tuple[str, str | None]] = field(default_factory=list)
    scan_progress: ScanProgress | None = None

    def __bool__(self) -> bool:
        return bool(
            self.events or self.snapshots or self.resync_requested or self.resync_done or self.full_resync_requested
            or self.scan_progress
        )


@dataclass(frozen=True)
class ScanProgress:
    """A full resync's page applied: written with the page's events, so a restart resumes after it."""

    request_id: int
    scan_id: str
    after: str | None  # the cursor this page was read after (a guard against a scan taken over meanwhile)
    cursor: str | None  # where the next page starts; None: the scan is complete
    seen: list[str]
    records: int


class EventStore(Protocol):
    def load_streams(self, stream_ids: Collection[str]) -> dict[str, LoadedStream]:
        """Latest snapshot + later events of each stream (absent streams are left out)."""
        ...

    def versions_and_streams(
        self, known: Collection[str], missing: Collection[str]
    ) -> tuple[dict[str, int], dict[str, LoadedStream]]:
        """The current version of each ``known`` stream and `load_streams(missing)`, at once (one round trip where
        the store can); absent streams are left out of both."""
        ...

    def versions_later(
        self, known: Collection[str], missing: Collection[str]
    ) -> tuple[PendingVersions, dict[str, LoadedStream]]:
        """`versions_and_streams` with the versions answered later: the loads now, the versions asked for now and
        read by `PendingVersions.result()`, so the store works on them while the caller decides."""
        ...

    def commit(self, changes: BatchChanges) -> None:
        """Write everything atomically; raise ConcurrencyConflict when a (stream, version) is taken."""
        ...

    def begin_commit(self, changes: BatchChanges) -> PendingCommit:
        """`commit`, its end confirmed later: what can be refused row by row (the events) is written now and
        raises here as `commit` would; the rest and the COMMIT are sent, and `PendingCommit.wait()` reads their
        answer, so the caller works meanwhile."""
        ...


class PendingCommit(Protocol):
    """A transaction sent and not yet confirmed. The store holds its connection until `wait()` or `close()`:
    one of the two is always called."""

    def wait(self) -> None:
        """Return once committed; raise what `commit` would have (the transaction is then rolled back)."""
        ...

    def close(self) -> None:
        """Give up waiting: the connection is given back once the server has answered (idempotent)."""
        ...


class PendingVersions(Protocol):
    """Stream versions asked for and not yet read. The store may hold a connection for them until `result()`
    or `close()`: one of the two is always called."""

    def result(self) -> dict[str, int]:
        """The versions as of when they were asked for (absent streams left out)."""
        ...

    def close(self) -> None:
        """Give up on the answer (idempotent; nothing after `result()`)."""
        ...


@dataclass(frozen=True)
class ClaimedResync:
    client_id: str
    reason: str
    generation: int
    attempts: int


@dataclass(frozen=True)
class FullResync:
    """A claimed full resync: ``scan_id`` and ``cursor`` say where a restarted one resumes."""

    request_id: int
    reason: str
    scan_id: str | None
    cursor: str | None
    phase: str  # pending, scanning, sweeping
    records: int


class ResyncQueue(Protocol):
    """Clients waiting for a read from Salesforce. A request is claimed by one worker for a lease; completing
    it (in the batch that applies the record) removes only the generation that was claimed."""

    def claim_resyncs(self, worker: str, limit: int, lease_s: float) -> list[ClaimedResync]: ...

    def release(self, client_ids: Collection[str], worker: str, retry_in_s: float = 0.0) -> None:
        """Give claims back without counting an attempt (Salesforce unavailable, a record to read again)."""
        ...

    def record_failure(self, client_ids: Collection[str], worker: str, error: str, max_attempts: int,
                       backoff_s: float, failing_retry_s: float) -> None:
        """Count a failed attempt; the next one waits ``backoff_s`` (``failing_retry_s`` past ``max_attempts``)."""
        ...

    def request(self, client_ids: Collection[str], reason: str) -> int:
        """Queue reads of these clients (an operator's request); return how many were queued or renewed."""
        ...

    def request_full(self, reason: str, source_key: str | None) -> bool:
        """Queue a full resync unless one is already pending; return whether one was queued."""
        ...

    def claim_full_resync(self, worker: str, lease_s: float) -> FullResync | None: ...

    def start_scan(self, request_id: int, scan_id: str) -> None: ...

    def unseen_clients(self, request_id: int, limit: int) -> list[str]:
        """Clients of the event store that the scan did not see and that have no read queued yet."""
        ...

    def complete_full_resync(self, request_id: int) -> None:
        """Mark this request (only this one) done."""
        ...

    def fail_full_resync(self, request_id: int, worker: str, error: str, retry_in_s: float,
                         restart: bool) -> None:
        """Release a full resync after a failure; ``restart`` drops its scan (a new one starts over)."""
        ...

    def seen_extra_fields(self) -> list[str]:
        """Keys of clients' ``extra`` seen so far (Salesforce field names), so a resync reads them too."""
        ...

    def status(self, max_attempts: int, failing_limit: int) -> ResyncStatus: ...


@dataclass(frozen=True)
class FailingResync:
    client_id: str
    attempts: int
    last_error: str | None
    next_attempt_at: Any


@dataclass(frozen=True)
class ResyncStatus:
    backlog: int
    due: int
    oldest_age_s: float | None
    failing_count: int
    failing: list[FailingResync]
    full: list[dict[str, Any]]


@dataclass(frozen=True)
class FetchedClient:
    """A client as Salesforce has it now; ``data`` is None when Salesforce says it is deleted or gone.

    ``fetched`` names the client attribute paths the read covered (``name``, ``billing_address.city``,
    ``extra.Custom__c``, ``extra.PersonName``): a resync replaces those and keeps every other attribute as it is.
    ``last_modified_ms`` is the record's SystemModstamp (LastModifiedDate when that is all there is): a change
    committed after it is newer than the record and must survive the resync. ``merged_into`` is the
    MasterRecordId of a record deleted by a merge."""

    client_id: str
    data: ClientData | None
    deleted: bool
    last_modified_ms: int | None
    fetched: frozenset[str] = frozenset()
    merged_into: str | None = None


@dataclass(frozen=True)
class ScanPage:
    """One page of a full read of every Account; ``cursor`` resumes after it (None: the scan is complete)."""

    clients: list[FetchedClient]
    cursor: str | None


@dataclass(frozen=True)
class ApiUsage:
    """Salesforce's daily API requests, as its last answer reported them (Sforce-Limit-Info)."""

    used: int
    limit: int


class ClientSource(Protocol):
    """Salesforce, seen from the application (the gateway adapter implements it).

    Errors: ``SourceUnavailable`` (transient: back off, retry), ``SourceAuthFailed`` (credentials refused: the
    role stays up, not ready), ``SourceRefused`` (Salesforce refused this request: retrying it will not help)."""

    def fetch_clients(self, client_ids: Sequence[str], extra_fields: Collection[str] = ()) -> dict[str, FetchedClient]:
        """Every id asked for is in the answer; an id Salesforce does not know comes back deleted. The fields
        read are the mapping's plus ``extra_fields`` (Salesforce names seen in clients' ``extra``), less those
        the org does not have."""
        ...

    def start_scan(self, extra_fields: Collection[str] = ()) -> str:
        """Start reading every Account, deleted ones included; return the scan's id (store it to resume)."""
        ...

    def scan_page(self, scan_id: str, cursor: str | None) -> ScanPage | None:
        """The page after ``cursor`` (None: the first page); None while Salesforce is still preparing."""
        ...

    def usage(self) -> ApiUsage | None:
        """The API usage last reported by Salesforce, None before any call."""
        ...


class EventLog(Protocol):
    """Every stream's events in global order: what a rebuild of the read models replays."""

    def read_all(self, after_position: int, limit: int, up_to: int | None = None) -> list[StoredEvent]:
        """Up to ``limit`` events whose global position is after ``after_position`` (and at most ``up_to``), in
        that order."""
        ...

    def settled_position(self) -> int:
        """A position no transaction can still commit an event at or below (waits for appends under way)."""
        ...


class ReadModelSession(Protocol):
    """One transaction on the read models."""

    def load(self, client_ids: Collection[str]) -> dict[str, dict[str, Any]]: ...

    def save(self, rows: Sequence[dict[str, Any]], history: Sequence[dict[str, Any]]) -> None: ...


class ReadModels(Protocol):
    """The projector's tables."""

    def session(self) -> AbstractContextManager[ReadModelSession]: ...

    def truncate(self) -> None: ...


class EventDecoder(Protocol):
    """Bytes of a `client.events` record -> the event as a record, by its writer schema."""

    def decode(self, value: bytes, event_type: str, schema_version: int) -> dict[str, Any]: ...
