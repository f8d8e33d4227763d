"""ClientAggregate: decides on Salesforce changes and returns events; `apply` is the only state change, so
rehydration and decision share one path. No I/O, no clock: time and ids come in as arguments."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from typing import Any

from worker.domain.errors import DiffMismatch
from worker.domain.events import (
    ClientDeleted,
    ClientDetailsChanged,
    ClientEvent,
    ClientMarkedForResync,
    ClientRegistered,
    ClientRestored,
    ClientResynchronized,
    ClientStatusChanged,
)
from worker.domain.services import ClientDomainService
from worker.domain.text_diff import apply_unified_diff
from worker.domain.values import ChangeRef, ClientDetails, ClientStatus, StatusRule, TextDiff

RECENT_CHANGES = 64  # change identities remembered for deduplication (same-second changes, redelivery)

# A change's position in Salesforce's commit order: (commit timestamp, commit number when known).
Position = tuple[int, int | None]
# A position as an aggregate keeps it per attribute (`position_code`): one int, or the tuple when no int holds it.
PositionCode = int | Position


class ClientAggregate:
    # Slots, and the compact forms below: a worker keeps tens of thousands of these in memory between batches.
    __slots__ = ("_field_positions", "_recent", "client_id", "deleted", "details", "fields_as_of",
                 "last_commit_number", "last_commit_ts_ms", "needs_resync", "registered", "resync_reason",
                 "resynced_as_of_ms", "status", "version")

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.version = 0
        self.registered = False
        self.details = ClientDetails()
        self.status = ClientStatus.UNKNOWN
        self.deleted = False
        self.needs_resync = False
        self.resync_reason: str | None = None
        self.last_commit_ts_ms: int | None = None
        self.last_commit_number: int | None = None
        self.resynced_as_of_ms: int | None = None
        # The last RECENT_CHANGES change identities, oldest first, each in its compact form (`_recent_entry`),
        # as one bytes object while they are all canonical transaction keys (`_Recent`).
        self._recent: _Recent = b""
        # Where each attribute was last changed: the full record's position (`fields_as_of`: every attribute
        # not listed in `field_positions` holds its value as of it), then each later change's. None: unknown
        # (state from a snapshot older than this tracking), so a stale change is dropped whole.
        self.fields_as_of: Position | None = None
        # Each position as its `position_code`, one object shared by the paths a change set together.
        self._field_positions: dict[str, PositionCode] | None = None  # None: empty (most clients)

    @property
    def recent_changes(self) -> tuple[tuple[str, int, str], ...]:
        """The remembered change identities (transaction key, sequence number, record id), oldest first."""
        return tuple(self._identity(entry) for entry in _recent_entries(self._recent))

    @property
    def field_positions(self) -> Mapping[str, Position]:
        """Where each attribute changed after the full record (`fields_as_of`); paths set together share one."""
        made: dict[PositionCode, Position] = {}
        return {path: made[code] if code in made else made.setdefault(code, position_of(code))
                for path, code in (self._field_positions or {}).items()}

    @classmethod
    def new(cls, client_id: str) -> ClientAggregate:
        return cls(client_id)

    @classmethod
    def rehydrate(cls, client_id: str, events: Iterable[ClientEvent]) -> ClientAggregate:
        client = cls(client_id)
        for event in events:
            client.apply(event)
        return client

    # -- decisions ---------------------------------------------------------------------------------------------

    def register(self, details: ClientDetails, change: ChangeRef, rule: StatusRule) -> list[ClientEvent]:
        """CREATE (the full record, with the final values of the transaction)."""
        if self._already_seen(change):
            return []
        if self.registered and not self.deleted:
            return ClientDomainService.determine_event_type(self, details, change, rule)
        return [ClientRegistered(self.client_id, details, rule.derive(details), change)]

    def change_details(
        self,
        changes: Mapping[str, Any],
        change: ChangeRef,
        rule: StatusRule,
        diffs: Mapping[str, TextDiff] | None = None,
    ) -> list[ClientEvent]:
        """UPDATE: only the changed attributes (None = set to null); long texts may come as diffs. A change older
        than the last one applied (a merged change that reached this client's partition late) still sets the
        attributes no later change has set."""
        if self._is_duplicate(change) or self._is_covered_by_resync(change):
            return []
        if self._is_stale(change):
            fresh = {path for path in (*changes, *(diffs or {})) if not self._changed_since(path, change)}
            if not fresh or not self.registered:
                return []
            changes = {path: value for path, value in changes.items() if path in fresh}
            diffs = {path: diff for path, diff in (diffs or {}).items() if path in fresh}
        if not self.registered:
            return self._ask_resync("update for a client never registered (a full record is needed)", change)
        if self.deleted or self.needs_resync:
            return []  # a deleted client takes no changes; a dirty one waits for its resync
        values = dict(changes)
        for path, diff in (diffs or {}).items():
            previous = self.details.get(path)
            if not isinstance(previous, str):
                return self._ask_resync(f"diff for {path} without a stored value", change)
            try:
                values[path] = apply_unified_diff(previous, diff.patch)
            except DiffMismatch as exc:
                return self._ask_resync(f"diff for {path} does not apply: {exc}", change)
        return ClientDomainService.determine_changes(self, values, change, rule)

    def delete(self, change: ChangeRef) -> list[ClientEvent]:
        if self._already_seen(change) or not self.registered or self.deleted:
            return []
        return [ClientDeleted(self.client_id, change)]

    def restore(self, details: ClientDetails, change: ChangeRef, rule: StatusRule) -> list[ClientEvent]:
        """UNDELETE carries the full record, so it is enough to know a client we never saw."""
        if self._already_seen(change):
            return []
        if self.registered and not self.deleted:
            return ClientDomainService.determine_event_type(self, details, change, rule)
        return [ClientRestored(self.client_id, details, rule.derive(details), change)]

    def mark_for_resync(self, reason: str, change: ChangeRef | None) -> list[ClientEvent]:
        """A gap event (or a dead-lettered change): hold later changes back until the record is fetched."""
        if change is not None and self._already_seen(change):
            return []
        if self.needs_resync:
            return []
        return [ClientMarkedForResync(self.client_id, reason, change)]

    def resynchronize(
        self,
        details: ClientDetails | None,
        as_of_ms: int | None,
        deleted: bool,
        rule: StatusRule,
        fetched: Collection[str] | None = None,
    ) -> list[ClientEvent]:
        """Apply the record as Salesforce has it now (None and deleted=True when it is gone). Salesforce is the
        truth here, so no status-transition check. ``fetched`` names the attribute paths the read covered: those
        are replaced, every other attribute is kept (None: the record is complete and replaces everything).
        A record older than a change already applied is refused (see :meth:`fetched_before_last_change`)."""
        if self.fetched_before_last_change(as_of_ms):
            return []
        if details is not None and fetched is not None and self.registered:
            read = {path: details.get(path) for path in sorted(fetched)}
            # an extra field read as null that was never set here stays absent (no key appears from nowhere)
            details = self.details.with_changes({
                path: value for path, value in read.items()
                if value is not None or not path.startswith("extra.") or path[6:] in self.details.extra
            })
        status = rule.derive(details) if details is not None else self.status
        differences = self.details.diff(details) if details is not None else {}
        unchanged = (
            not differences
            and deleted == self.deleted
            and (details is None or self.registered)
            and status == self.status
        )
        if unchanged and not self.needs_resync:
            return []
        return [ClientResynchronized(self.client_id, details, status, deleted, differences, as_of_ms)]

    def holds_back(self, change: ChangeRef) -> bool:
        """True when ``change`` is new but waits for a resync (the client is dirty): the read that clears the
        flag must not predate it."""
        return self.needs_resync and not self.deleted and not self._already_seen(change)

    def fetched_before_last_change(self, as_of_ms: int | None) -> bool:
        """True when a record read as of ``as_of_ms`` (its SystemModstamp) predates the last change applied
        here: applying it would revert that change, so it must be read again. Both clocks have one-second
        resolution; a record of the same second as the last change is taken as containing it."""
        if as_of_ms is None or self.last_commit_ts_ms is None:
            return False
        return as_of_ms // 1000 < self.last_commit_ts_ms // 1000

    # -- guards ------------------------------------------------------------------------------------------------

    def _already_seen(self, change: ChangeRef) -> bool:
        return self._is_duplicate(change) or self._is_stale(change) or self._is_covered_by_resync(change)

    def _is_duplicate(self, change: ChangeRef) -> bool:
        return _recent_has(self._recent, self._recent_entry(change.transaction_key, change.sequence_number,
                                                            change.record_id))

    def _is_stale(self, change: ChangeRef) -> bool:
        """Older than the last applied change: a replay. Timestamps have one-second resolution, so within the
        same second the commit number (SCN, monotonic within an org instance) breaks the tie when both are
        known; with neither, only the change identity decides."""
        if self.last_commit_ts_ms is None:
            return False
        if change.commit_timestamp_ms != self.last_commit_ts_ms:
            return change.commit_timestamp_ms < self.last_commit_ts_ms
        known = change.commit_number is not None and self.last_commit_number is not None
        return known and change.commit_number < self.last_commit_number  # type: ignore[operator]

    def _changed_since(self, path: str, change: ChangeRef) -> bool:
        """Whether ``path`` may hold a value set after ``change``: unknown counts as changed."""
        positions = self._field_positions
        code = positions.get(path) if positions else None
        position = self.fields_as_of if code is None else position_of(code)
        return position is None or _later(position, _position(change))

    def _is_covered_by_resync(self, change: ChangeRef) -> bool:
        """Already contained in the record fetched at the last resync (its LastModifiedDate)."""
        if self.resynced_as_of_ms is None:
            return False
        stamp = change.last_modified_ms if change.last_modified_ms is not None else change.commit_timestamp_ms
        return stamp <= self.resynced_as_of_ms

    def _ask_resync(self, reason: str, change: ChangeRef) -> list[ClientEvent]:
        if self.needs_resync:
            return []
        return [ClientMarkedForResync(self.client_id, reason, change)]

    # -- state -------------------------------------------------------------------------------------------------

    def apply(self, event: ClientEvent) -> None:
        """The only way state changes."""
        if isinstance(event, (ClientRegistered, ClientRestored)):
            self.details, self.status = event.details, event.status
            self.registered, self.deleted = True, False
            self._fields_as_of(_position(event.change) if event.change else None)
        elif isinstance(event, ClientDetailsChanged):
            self.details = self.details.with_changes({path: new for path, (_, new) in event.changes.items()})
            if event.change is not None:
                at = position_code(_position(event.change))
                positions = self._field_positions
                if positions is None:
                    positions = self._field_positions = {}
                for path in event.changes:
                    known = positions.get(path)
                    positions[path] = at if known is None or _later_code(at, known) else known
        elif isinstance(event, ClientStatusChanged):
            self.status = event.new_status
        elif isinstance(event, ClientDeleted):
            self.deleted = True
        elif isinstance(event, ClientMarkedForResync):
            self.needs_resync, self.resync_reason = True, event.reason
        elif isinstance(event, ClientResynchronized):
            if event.details is not None:
                self.details, self.registered = event.details, True
            self.status, self.deleted = event.status, event.deleted
            self.needs_resync, self.resync_reason = False, None
            if event.details is not None:
                self._fields_as_of((event.as_of_ms, None) if event.as_of_ms is not None else None)
            if event.as_of_ms is not None:
                self.resynced_as_of_ms = max(self.resynced_as_of_ms or 0, event.as_of_ms)
                if event.as_of_ms > (self.last_commit_ts_ms or 0):
                    self.last_commit_ts_ms, self.last_commit_number = event.as_of_ms, None
        self._remember(event.change_ref)
        self.version += 1

    def _fields_as_of(self, position: Position | None) -> None:
        """A full record: every attribute holds its value as of ``position`` (None: unknown)."""
        self.fields_as_of, self._field_positions = position, None

    def _remember(self, change: ChangeRef | None) -> None:
        if change is None:
            return
        entry = self._recent_entry(change.transaction_key, change.sequence_number, change.record_id)
        if not _recent_has(self._recent, entry):
            self._recent = _recent_with(self._recent, entry)
        position = (change.commit_timestamp_ms, change.commit_number)
        if self.last_commit_ts_ms is None or change.commit_timestamp_ms > self.last_commit_ts_ms:
            self.last_commit_ts_ms, self.last_commit_number = position
        elif change.commit_timestamp_ms == self.last_commit_ts_ms and change.commit_number is not None:
            self.last_commit_number = max(self.last_commit_number or 0, change.commit_number)

    def share_repeated_values(self) -> None:
        """Memory only, nothing a decision sees: the details' repeated attributes become the strings `shared` keeps
        for all clients (equal values; no event, no new version). For an aggregate loaded from the store, which
        the translator's shared values did not build."""
        self.details = self.details.with_shared_values()

    # -- snapshots ---------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "version": self.version,
            "registered": self.registered,
            "details": self.details.to_dict(),
            "status": self.status.value,
            "deleted": self.deleted,
            "needs_resync": self.needs_resync,
            "resync_reason": self.resync_reason,
            "last_commit_ts_ms": self.last_commit_ts_ms,
            "last_commit_number": self.last_commit_number,
            "resynced_as_of_ms": self.resynced_as_of_ms,
            "recent_changes": [list(identity) for identity in self.recent_changes],
            "fields_as_of": list(self.fields_as_of) if self.fields_as_of is not None else None,
            "field_positions": {path: list(at) for path, at in self.field_positions.items()},
        }

    @classmethod
    def from_snapshot(cls, state: Mapping[str, Any]) -> ClientAggregate:
        client = cls(state["client_id"])
        client.version = state["version"]
        client.registered = state["registered"]
        client.details = ClientDetails.from_dict(state["details"])
        client.status = ClientStatus(state["status"])
        client.deleted = state["deleted"]
        client.needs_resync = state["needs_resync"]
        client.resync_reason = state.get("resync_reason")
        client.last_commit_ts_ms = state.get("last_commit_ts_ms")
        client.last_commit_number = state.get("last_commit_number")
        client.resynced_as_of_ms = state.get("resynced_as_of_ms")
        recent = state.get("recent_changes", [])
        client._recent = _recent_form([client._recent_entry(str(t), int(s), str(r)) for t, s, r in recent])
        as_of = state.get("fields_as_of")  # absent from snapshots taken before positions were tracked: unknown
        client.fields_as_of = (int(as_of[0]), as_of[1]) if as_of else None
        positions = state.get("field_positions")
        made: dict[Position, PositionCode] = {}
        client._field_positions = {
            path: made[key] if (key := (int(at[0]), at[1])) in made else made.setdefault(key, position_code(key))
            for path, at in positions.items()} if positions else None
        return client

    # -- compact change identities ------------------------------------------------------------------------------

    def _recent_entry(self, transaction_key: str, sequence_number: int, record_id: str) -> _RecentEntry:
        """One change identity as remembered, one-to-one (so `in` answers as the identity tuples would): the
        transaction key (its number when it is a canonical UUID, `_compact_key`) alone for the common case (this
        client's own record, sequence number 1), else with the sequence number, and the record id only when it
        names another record (a merge)."""
        key = _compact_key(transaction_key)
        if record_id != self.client_id:
            return (key, sequence_number, record_id)
        return key if sequence_number == 1 else (key, sequence_number)

    def _identity(self, entry: _RecentEntry) -> tuple[str, int, str]:
        if not isinstance(entry, tuple):
            return (_key_text(entry), 1, self.client_id)
        if len(entry) == 2:
            return (_key_text(entry[0]), entry[1], self.client_id)
        return (_key_text(entry[0]), entry[1], entry[2])


# A remembered change identity (see ClientAggregate._recent_entry).
_RecentEntry = int | str | tuple[int | str, int] | tuple[int | str, int, str]
# The remembered identities, oldest first: while every one is a canonical transaction key (an int below 2**128, the
# common case), their 16-byte big-endian forms joined in one bytes object (16 bytes each where the ints took 56
# with their slot in a tuple: a third of a cached aggregate's memory for a busy client), else a tuple of entries.
_Recent = bytes | tuple[_RecentEntry, ...]
_KEY_BYTES = 16


def _recent_has(recent: _Recent, entry: _RecentEntry) -> bool:
    if not isinstance(recent, bytes):
        return entry in recent
    if type(entry) is not int:
        return False
    key = entry.to_bytes(_KEY_BYTES, "big")
    at = recent.find(key)
    while at >= 0:  # a match must start on an entry's boundary
        if not at % _KEY_BYTES:
            return True
        at = recent.find(key, at + 1)
    return False


def _recent_with(recent: _Recent, entry: _RecentEntry) -> _Recent:
    """``recent`` with ``entry`` last, the last RECENT_CHANGES kept."""
    if isinstance(recent, bytes):
        if type(entry) is int:
            return (recent + entry.to_bytes(_KEY_BYTES, "big"))[-_KEY_BYTES * RECENT_CHANGES:]
        recent = _recent_entries(recent)
    return (*recent, entry)[-RECENT_CHANGES:]


def _recent_entries(recent: _Recent) -> tuple[_RecentEntry, ...]:
    if not isinstance(recent, bytes):
        return recent
    return tuple(int.from_bytes(recent[at:at + _KEY_BYTES], "big") for at in range(0, len(recent), _KEY_BYTES))


def _recent_form(entries: list[_RecentEntry]) -> _Recent:
    if all(type(entry) is int for entry in entries):
        return b"".join(entry.to_bytes(_KEY_BYTES, "big") for entry in entries)  # type: ignore[union-attr]
    return tuple(entries)


# Exactly the texts `_key_text` writes; `int()` would also read upper case, "_", signs and spaces.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@lru_cache(maxsize=16)  # a change's key is asked 2-3 times in a row: while it is decided, then applied
def _compact_key(key: str) -> int | str:
    """A transaction key as remembered: a canonical UUID text (lower-case hex, 8-4-4-4-12) as its 128-bit number
    (44 bytes instead of 85), any other text as is. One-to-one: `_key_text` gives the same text back."""
    if len(key) == 36 and _CANONICAL_UUID.fullmatch(key):
        return int(key.replace("-", ""), 16)
    return key


def _key_text(key: int | str) -> str:
    if isinstance(key, str):
        return key
    h = f"{key:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _position(change: ChangeRef) -> Position:
    return (change.commit_timestamp_ms, change.commit_number)


_NUMBER_BITS = 64
_NUMBER_MASK = (1 << _NUMBER_BITS) - 1


def position_code(position: Position) -> PositionCode:
    """``position`` as one int: the timestamp above the low 64 bits, the commit number + 1 in them (0: unknown).
    One object of ~48 bytes where the tuple and its two ints take ~128: an aggregate keeps a position for every
    attribute a change set since its full record, and a worker keeps tens of thousands of aggregates. Ordered as
    the positions are (`_later_code`). A position whose number no such int holds exactly (negative, 64 bits or
    more, not an int) stays the tuple."""
    ts, number = position
    if type(ts) is int and (number is None or (type(number) is int and 0 <= number < _NUMBER_MASK)):
        return (ts << _NUMBER_BITS) | (0 if number is None else number + 1)
    return position


def position_of(code: PositionCode) -> Position:
    """The position `position_code` gave ``code`` for."""
    if type(code) is tuple:
        return code
    number = code & _NUMBER_MASK  # type: ignore[operator]
    return (code >> _NUMBER_BITS, number - 1 if number else None)  # type: ignore[operator]


def _later_code(a: PositionCode, b: PositionCode) -> bool:
    """`_later` of two position codes, on the ints themselves when both are ints."""
    if type(a) is int and type(b) is int:
        if (a ^ b) >> _NUMBER_BITS:  # different timestamps: the int's order is theirs
            return a > b
        if not (a & _NUMBER_MASK and b & _NUMBER_MASK):  # the same second, a number unknown
            return a != b
        return a > b
    return _later(position_of(a), position_of(b))


def _later(a: Position, b: Position) -> bool:
    """``a`` is after ``b`` in commit order, or may be (same second, a commit number unknown)."""
    if a[0] != b[0]:
        return a[0] > b[0]
    if a[1] is None or b[1] is None:
        return a != b
    return a[1] > b[1]
