"""Ports: what the application needs from the outside, as small Protocols and plain records."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.application.commands import ClientData, Command


@dataclass(frozen=True)
class Decoded:
    """What one external message asks for: commands, or none with the reason it was skipped."""

    commands: list[Command]
    skipped: str | None = None


@dataclass(frozen=True)
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
    # client id -> the requested_at read with the request (None: unconditional); a request renewed since is kept.
    resync_done: dict[str, Any] = field(default_factory=dict)
    full_resync_requested: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.events or self.snapshots or self.resync_requested or self.resync_done or self.full_resync_requested
        )


class EventStore(Protocol):
    def load_streams(self, stream_ids: Collection[str]) -> dict[str, LoadedStream]:
        """Latest snapshot + later events of each stream (absent streams are left out)."""
        ...

    def stream_versions(self, stream_ids: Collection[str]) -> dict[str, int]:
        """The current version of each stream (absent streams are left out): one cheap query."""
        ...

    def commit(self, changes: BatchChanges) -> None:
        """Write everything atomically; raise ConcurrencyConflict when a (stream, version) is taken."""
        ...


class ResyncQueue(Protocol):
    def pending_resyncs(self, limit: int) -> list[tuple[str, str, Any]]:
        """(client id, reason, requested_at) of the oldest requests."""
        ...

    def record_resync_failure(self, client_ids: Collection[str], error: str) -> None: ...

    def pending_full_resync(self) -> tuple[int, str] | None: ...

    def complete_full_resync(self, request_id: int) -> None: ...

    def known_client_ids(self) -> list[str]: ...


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
