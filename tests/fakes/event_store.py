"""The EventStore port in memory, for unit tests: the same optimistic-concurrency rule and the same refusals of
values as the PostgreSQL store (jsonb takes no NaN, no Infinity, no NUL; psycopg sends no text without a UTF-8
form)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import psycopg

from worker.application.errors import ConcurrencyConflict
from worker.application.ports import BatchChanges, LoadedStream, StoredEvent


def jsonb_text(value: Any) -> str:
    """The JSON text the Postgres event store writes (json.dumps as in event_store._json, non-ASCII as it is),
    checked as jsonb would: PostgreSQL refuses NaN/Infinity (not JSON) and \\u0000 (no NUL in jsonb text); and
    as psycopg sends it: in UTF-8, which an unpaired surrogate has no form in (UnicodeEncodeError)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text.encode("utf-8")

    def refuse(constant: str) -> Any:
        raise psycopg.errors.InvalidTextRepresentation(f"invalid input syntax for type json: {constant}")

    json.loads(text, parse_constant=refuse)
    if "\\u0000" in text:
        raise psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence \\u0000")
    return text


class MemoryStore:
    """The EventStore port in memory, refusing what PostgreSQL's jsonb refuses, like the real one, with a
    DataError; `fail_next` makes the next commits raise the given errors (a transient fault, a conflict) while
    the events are written, `fail_at_wait` when the commit's end is read (`begin_commit`: nothing applied)."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.snapshots: dict[str, tuple[int, Any]] = {}
        self.resync_requested: dict[str, str] = {}
        self.commits = 0
        self.fail_next: list[BaseException] = []
        self.fail_at_wait: list[BaseException] = []
        self.pending: list[AnsweredVersions] = []  # every `versions_later` answer: a test checks each is settled

    def load_streams(self, stream_ids: Collection[str]) -> dict[str, LoadedStream]:
        out = {}
        for sid in stream_ids:
            version, state = self.snapshots.get(sid, (0, None))
            later = [e for e in self.events if e.stream_id == sid and e.version > version]
            if later or state is not None:
                out[sid] = LoadedStream(sid, state, version, later)
        return out

    def _versions(self, stream_ids: Collection[str]) -> dict[str, int]:
        return {sid: max(e.version for e in self.events if e.stream_id == sid)
                for sid in stream_ids if any(e.stream_id == sid for e in self.events)}

    def versions_and_streams(
        self, known: Collection[str], missing: Collection[str]
    ) -> tuple[dict[str, int], dict[str, LoadedStream]]:
        return self._versions(known), self.load_streams(missing) if missing else {}

    def versions_later(
        self, known: Collection[str], missing: Collection[str]
    ) -> tuple[AnsweredVersions, dict[str, LoadedStream]]:
        """Answered as of the call, as the PostgreSQL store's query runs when it is sent."""
        versions, loaded = self.versions_and_streams(known, missing)
        self.pending.append(pending := AnsweredVersions(versions))
        return pending, loaded

    def commit(self, changes: BatchChanges) -> None:
        self.begin_commit(changes).wait()

    def begin_commit(self, changes: BatchChanges) -> PendingApply:
        """What the PostgreSQL store refuses while it writes the events (a value, a taken version) raises here;
        the batch is applied by `wait()`, or not at all when ``fail_at_wait`` names an error for it."""
        if self.fail_next:
            raise self.fail_next.pop(0)
        for event in changes.events:
            jsonb_text(event.payload)
            jsonb_text(event.metadata)
        for snap in changes.snapshots:
            jsonb_text(snap.state)
        taken = {(e.stream_id, e.version) for e in self.events}
        if any((e.stream_id, e.version) in taken for e in changes.events):
            raise ConcurrencyConflict("taken")
        return PendingApply(self, changes)

    def _apply(self, changes: BatchChanges) -> None:
        self.commits += 1
        self.events += changes.events
        for snap in changes.snapshots:
            self.snapshots[snap.stream_id] = (snap.version, snap.state)
        self.resync_requested.update(changes.resync_requested)

    def kinds(self, stream_id: str) -> list[str]:
        return [e.event_type for e in self.events if e.stream_id == stream_id]


class PendingApply:
    """MemoryStore's PendingCommit: the batch applied at `wait()` (the port's contract: one of wait or close)."""

    def __init__(self, store: MemoryStore, changes: BatchChanges) -> None:
        self._store, self._changes = store, changes
        self.settled = False

    def wait(self) -> None:
        if self.settled:
            raise RuntimeError("a commit waited for twice")
        self.settled = True
        if self._store.fail_at_wait:
            raise self._store.fail_at_wait.pop(0)
        self._store._apply(self._changes)

    def close(self) -> None:
        self.settled = True


class AnsweredVersions:
    """PendingVersions answered at once; remembers whether it was read or closed (the port's contract)."""

    def __init__(self, versions: dict[str, int]) -> None:
        self._versions = versions
        self.settled = False

    def result(self) -> dict[str, int]:
        if self.settled:
            raise RuntimeError("versions read after result() or close()")
        self.settled = True
        return self._versions

    def close(self) -> None:
        self.settled = True
