"""ClientBatch: the unit of work of one consumed batch.

Aggregates are loaded once per batch (in bulk), decisions apply to them in memory, and everything recorded is
written by the event store in ONE transaction at the end (`changes()`).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterable, Mapping
from enum import Enum
from itertools import islice
from typing import Any

from worker.application.errors import ConcurrencyConflict
from worker.application.ports import (
    BatchChanges,
    EventStore,
    LoadedStream,
    PendingCommit,
    PendingVersions,
    ScanProgress,
    Snapshot,
    StoredEvent,
)
from worker.application.upcasting import DEFAULT_UPCASTERS, Upcasters
from worker.domain import ClientAggregate, ClientEvent, ClientMarkedForResync, ClientResynchronized
from worker.domain.events import event_from_payload
from worker.domain.packing import pack, unpack
from worker.domain.values import frozen_constructor, is_shared

SNAPSHOT_SCHEMA_VERSION = 1


_ID_BYTES = 16
_id_pool: list[str] = []
os.register_at_fork(after_in_child=_id_pool.clear)  # a forked child must not hand out its parent's ids


def new_event_id() -> str:
    """A random (version 4) UUID as text, like `str(uuid.uuid4())` but drawn from os.urandom in bulk and
    formatted without a UUID object (ingest makes one per event)."""
    if not _id_pool:
        raw = os.urandom(_ID_BYTES * 256).hex()
        for i in range(0, len(raw), 2 * _ID_BYTES):
            h = raw[i:i + 2 * _ID_BYTES]
            _id_pool.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}")
    return _id_pool.pop()


class AggregateCache:
    """Aggregates as the last committed batch left them, so a busy client is not reloaded from the store for
    every batch. A batch *takes* its aggregates out and gives them back only after its transaction committed:
    a failed or conflicting batch leaves nothing half-applied here, and the retry loads from the store. Another
    writer (a rebalance, a resync run by another worker) can move a stream on: every batch compares the cached
    versions with the store's (one indexed query) and reloads those, before deciding or, for ingest, at its
    commit (the batch is then decided again; see `ClientBatch.preload`), and the store's optimistic concurrency
    check refuses a batch that raced one.

    Sized by memory: ``max_mib`` bounds the estimated size of what is kept, ``capacity`` the count. Aggregates are
    kept as objects while they fit in ``LIVE_SHARE`` of the budget (taking one back costs nothing); past it the
    least recently used are packed (`worker.domain.packing`: ~0.8 KB where the objects take ~2.3 KB; a take and
    give back of a packed one costs 20-35 µs, less than a reload from the store; bytes the garbage collector never
    walks), and only when the packed ones alone overflow do the least recently used go (as does one that has no
    packed form). The size
    of the objects is estimated (the mean deep size of one in ``SAMPLE_EVERY`` given back), that of a packed one
    follows from its length."""

    # Aggregates kept as objects take at most this share of the budget. Memory freed by packing objects is mostly
    # not given back to the system (the allocator's arenas stay partly used), so objects filling the whole budget
    # before packing began left the process holding their peak and the packed bytes on top: 269 MiB peak RSS at
    # x10 for a 96 MiB budget, against 231 with a third (and x10 / base 0.91, all 100 000 still kept). Half, since
    # an aggregate takes ~2.3 KB (shared repeated values, positions as ints): the bench's x5 (20 000 clients) is
    # kept whole as objects, 93.9 µs CPU a message against 102.8 with a third (no packing), for +13 MiB at x10.
    LIVE_SHARE = 1 / 2
    SAMPLE_EVERY = 256  # a deep size costs ~75 µs: 0.3 µs per aggregate given back
    # The cache's own memory per entry: its slot in the dict (an index, the entry, the table's spare room).
    SLOT_BYTES = 64
    # A packed entry's memory besides its bytes and key characters: the bytes object's header (33), the key's (an
    # ASCII str: 49; the only copy of the client id once the aggregate is packed), the slot, and the allocator's
    # rounding up to 16 bytes of each (8 on average) and malloc's header past 512 bytes (8).
    PACKED_ENTRY_BYTES = 33 + 49 + SLOT_BYTES + 8 + 8 + 8

    def __init__(self, capacity: int, max_mib: float = 0.0) -> None:
        self._capacity = capacity
        self._max_bytes = int(max_mib * 1024 * 1024)
        self._max_live_bytes = self._max_bytes * self.LIVE_SHARE
        # Least recently given back first, all packed ones before all live ones (a live one is packed only once
        # it is the least recently used of the live). Plain dicts: ordered, and lighter than OrderedDicts.
        self._live: dict[str, ClientAggregate] = {}
        self._packed: dict[str, bytes] = {}
        self._packed_bytes = 0
        self._entry_bytes = 0.0  # until measured: the first aggregate given back is
        self._given = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._live) + len(self._packed)

    @property
    def entry_bytes(self) -> float:
        """The estimated memory of one aggregate kept as objects (bytes)."""
        return self._entry_bytes

    @property
    def packed(self) -> int:
        """How many entries are kept packed."""
        return len(self._packed)

    @property
    def nbytes(self) -> int:
        """The estimated memory of what is kept (bytes)."""
        return int(len(self._live) * self._entry_bytes) + self._packed_bytes

    def take(self, client_ids: Iterable[str]) -> dict[str, ClientAggregate]:
        live, packed = self._live, self._packed
        found: dict[str, ClientAggregate] = {}
        for cid in client_ids:
            aggregate = live.pop(cid, None)
            if aggregate is None:
                data = packed.pop(cid, None)
                if data is None:
                    continue
                self._packed_bytes -= self._packed_size(cid, data)
                aggregate = unpack(cid, data)
            found[cid] = aggregate
        self.hits += len(found)
        return found

    def give_back(self, aggregates: Mapping[str, ClientAggregate]) -> None:
        if self._capacity <= 0:
            return
        live, packed = self._live, self._packed
        for cid, aggregate in aggregates.items():
            key = aggregate.client_id if aggregate.client_id == cid else cid  # one string for key and state
            self._given += 1
            if self._max_bytes > 0 and self._given % self.SAMPLE_EVERY == 1:
                size = deep_size(aggregate) + self.SLOT_BYTES
                self._entry_bytes += (size - self._entry_bytes) / (8 if self._entry_bytes else 1)  # a moving mean
            if live.pop(key, None) is None and key in packed:  # not taken first: the kept one is older
                self._packed_bytes -= self._packed_size(key, packed.pop(key))
            live[key] = aggregate  # at the end: the most recently used
        excess = len(live) + len(packed) - self._capacity
        if excess > 0:
            self._evict(excess)
        if self._max_bytes > 0 and (self.nbytes > self._max_bytes or self._live_bytes > self._max_live_bytes):
            self._pack_to_fit()

    def clear(self) -> None:
        self._live.clear()
        self._packed.clear()
        self._packed_bytes = 0

    def _pack_to_fit(self) -> None:
        """Pack the least recently used live aggregates until the budget holds; evict when that is not enough."""
        live, packed = self._live, self._packed
        while live and (self.nbytes > self._max_bytes or self._live_bytes > self._max_live_bytes):
            # keys in chunks: iterating a dict from its front walks over what was popped there, a scan per call
            packed_mean = self._packed_bytes / len(packed) if packed else self._entry_bytes / 4
            count = int(max((self.nbytes - self._max_bytes) / max(self._entry_bytes - packed_mean, 1.0),
                            (self._live_bytes - self._max_live_bytes) / max(self._entry_bytes, 1.0))) + 1
            for key in list(islice(live, count)):
                aggregate = live.pop(key)
                data = pack(aggregate)
                if data is not None:  # else (a value with no packed form) it goes: it was the least recently used
                    packed[key] = data
                    self._packed_bytes += self._packed_size(key, data)
        while packed and self.nbytes > self._max_bytes:
            self._evict(int((self.nbytes - self._max_bytes) / (self._packed_bytes / len(packed))) + 1)

    @property
    def _live_bytes(self) -> float:
        return len(self._live) * self._entry_bytes

    def _evict(self, count: int) -> None:
        """Drop the ``count`` least recently used entries: packed ones first (they are the older)."""
        packed = self._packed
        gone = list(islice(packed, count))
        for key in gone:
            self._packed_bytes -= self._packed_size(key, packed.pop(key))
        for key in list(islice(self._live, count - len(gone))):
            del self._live[key]

    def _packed_size(self, key: str, data: bytes) -> int:
        return len(data) + len(key) + self.PACKED_ENTRY_BYTES


_SHARED_TYPES = (type, Enum, bool, type(None))
_PYMALLOC_MAX = 512  # larger blocks come from malloc, with its 8-byte chunk header
# CPython 3.11/3.12 keep a plain object's attributes in a separate values array (a "managed" __dict__ that is not
# materialised): sys.getsizeof leaves it out, though it is ~150 bytes for a 14-field dataclass.
_MANAGED_DICT = 1 << 4


def deep_size(root: object) -> int:
    """Bytes held by ``root`` and what it alone refers to (classes, enum members, cached small integers and
    one-character strings left out), each object as the allocator hands it out (16-byte steps), an object's
    attribute values array included."""
    seen: set[int] = set()
    stack: list[object] = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _SHARED_TYPES) or _is_cached_constant(obj) or is_shared(obj):
            continue
        seen.add(id(obj))
        total += _allocated(sys.getsizeof(obj))
        if not isinstance(obj, (str, int, float, bytes)):
            referents = gc.get_referents(obj)
            if type(obj).__flags__ & _MANAGED_DICT and not (len(referents) == 2 and type(referents[0]) is dict):
                total += _allocated(8 * (len(referents) + 3))  # a slot per attribute (and the type), a header
            stack.extend(referents)
    return total


def _allocated(size: int) -> int:
    return (size + (8 if size > _PYMALLOC_MAX else 0) + 15) & ~15


def _is_cached_constant(obj: object) -> bool:
    """Objects the interpreter keeps once for everyone: small integers, short strings, the empty tuple."""
    if isinstance(obj, str):
        return len(obj) <= 1
    if type(obj) is int:
        return -5 <= obj <= 256
    return type(obj) is tuple and not obj


class ClientBatch:
    def __init__(
        self,
        store: EventStore,
        *,
        snapshot_interval: int,
        worker_version: str,
        upcasters: Upcasters = DEFAULT_UPCASTERS,
        cache: AggregateCache | None = None,
    ) -> None:
        self._store = store
        self._cache = cache
        self._snapshot_interval = snapshot_interval
        self._worker_version = worker_version
        self._upcasters = upcasters
        self._clients: dict[str, ClientAggregate] = {}
        self._loaded_versions: dict[str, int] = {}
        self._changes = BatchChanges()
        self._pending: list[tuple[PendingVersions, dict[str, int]]] = []
        self.events_replayed = 0
        self.snapshot_hits = 0

    def preload(self, client_ids: Iterable[str], *, check_later: bool = False) -> None:
        """Every aggregate the batch needs, in one round trip to the store: those the cache kept (another writer, a
        resync elsewhere or a rebalance, may have moved a stream on: their versions are checked in the same trip,
        and a stale one is reloaded) and those it did not.

        With ``check_later`` the versions of the cached ones are asked for now and compared at `commit()`, which
        raises ConcurrencyConflict when one moved on (the batch is then decided again, on aggregates reloaded:
        those it took from the cache are not given back), so the store answers while the batch decides. Such a
        batch must end by `commit()` or `close()`."""
        missing = {cid for cid in client_ids if cid not in self._clients}
        if not missing:
            return
        cached = self._cache.take(missing) if self._cache is not None else {}
        missing -= cached.keys()
        if cached and check_later:
            pending, loaded = self._store.versions_later(list(cached), missing)
            self._pending.append((pending, {cid: a.version for cid, a in cached.items()}))
            self._clients.update(cached)
            self._loaded_versions.update(self._pending[-1][1])
        elif cached:
            current, loaded = self._store.versions_and_streams(list(cached), missing)
            stale = {cid for cid, a in cached.items() if current.get(cid, 0) != a.version}
            if stale:
                loaded.update(self._store.load_streams(stale))
                missing |= stale
            self._clients.update((cid, a) for cid, a in cached.items() if cid not in stale)
            self._loaded_versions.update({cid: a.version for cid, a in cached.items() if cid not in stale})
        elif missing:
            loaded = self._store.load_streams(missing)
        else:
            return
        for cid in missing:
            self._clients[cid] = self._rehydrate(cid, loaded.get(cid))
            self._loaded_versions[cid] = self._clients[cid].version

    def get(self, client_id: str) -> ClientAggregate:
        if client_id not in self._clients:
            self.preload([client_id])
        return self._clients[client_id]

    def record(self, client: ClientAggregate, events: Iterable[ClientEvent], metadata: Mapping[str, Any]) -> int:
        """Apply ``events`` to ``client`` and stage them for the batch's transaction; return how many."""
        count = 0
        stored, worker_version = self._changes.events, self._worker_version
        for event in events:
            client.apply(event)
            meta = {"event_id": new_event_id(), "worker_version": worker_version, **metadata}
            # (stream_id, version, event_type, schema_version, payload, metadata): positional, the hot path
            stored.append(_new_stored_event(client.client_id, client.version, event.event_type,
                                            event.schema_version, event.to_payload(), meta, None))
            if type(event) in _RESYNC_EVENTS:
                self._track_resync(event)
            if client.version % self._snapshot_interval == 0:
                self._changes.snapshots.append(
                    Snapshot(client.client_id, client.version, SNAPSHOT_SCHEMA_VERSION, client.snapshot())
                )
            count += 1
        return count

    def request_full_resync(self, reason: str, source_key: str | None = None) -> None:
        self._changes.full_resync_requested.append((reason, source_key))

    def request_resync(self, client_id: str, reason: str) -> None:
        self._changes.resync_requested[client_id] = reason
        self._changes.resync_done.pop(client_id, None)

    def resync_completed(self, client_id: str, generation: int) -> None:
        """Drop the request of this ``generation`` (one renewed since stays queued)."""
        if client_id not in self._changes.resync_requested:
            self._changes.resync_done[client_id] = generation

    def scan_progressed(self, progress: ScanProgress) -> None:
        """A full resync's page: its cursor and the clients it saw commit with the page's events."""
        self._changes.scan_progress = progress

    def changes(self) -> BatchChanges:
        return self._changes

    def commit(self) -> None:
        """Write everything recorded in ONE transaction; then the aggregates are current: cache them."""
        self.begin_commit().wait()

    def begin_commit(self) -> PendingCommit:
        """`commit`, confirmed by the returned handle's `wait()` (`EventStore.begin_commit`): the versions are
        checked and the events written now (a conflict or a refused row raises here); the aggregates go back to
        the cache once the commit is confirmed, never before."""
        self._check_versions()
        return _CachedOnCommit(self._store.begin_commit(self._changes), self._cache, self._clients)

    def close(self) -> None:
        """Give back what the store holds for this batch (versions asked for and not read); idempotent."""
        pending, self._pending = self._pending, []
        for versions, _ in pending:
            versions.close()

    def _check_versions(self) -> None:
        pending, self._pending = self._pending, []
        stale: list[str] = []
        try:
            while pending:
                versions, expected = pending.pop(0)
                current = versions.result()
                stale += [cid for cid, version in expected.items() if current.get(cid, 0) != version]
        finally:
            for versions, _ in pending:
                versions.close()
        if stale:
            raise ConcurrencyConflict(f"{len(stale)} cached aggregate(s) moved on in the store since they were cached"
                                      f" (another writer): {', '.join(sorted(stale)[:3])}")

    def _track_resync(self, event: ClientEvent) -> None:
        if isinstance(event, ClientMarkedForResync):
            self.request_resync(event.client_id, event.reason)
        elif isinstance(event, ClientResynchronized):
            self._changes.resync_requested.pop(event.client_id, None)

    def _rehydrate(self, client_id: str, stream: LoadedStream | None) -> ClientAggregate:
        if stream is None:
            return ClientAggregate.new(client_id)
        if stream.snapshot is not None:
            _readable(stream)
            client = ClientAggregate.from_snapshot(stream.snapshot)
            self.snapshot_hits += 1
        else:
            client = ClientAggregate.new(client_id)
        for stored in stream.events:
            _, payload = self._upcasters.upcast(stored.event_type, stored.schema_version, stored.payload)
            client.apply(event_from_payload(stored.event_type, payload, stored.stream_id))
            self.events_replayed += 1
        client.share_repeated_values()
        return client


class _CachedOnCommit:
    """A batch's pending commit; once confirmed, its aggregates are given back to the cache."""

    def __init__(self, pending: PendingCommit, cache: AggregateCache | None,
                 clients: dict[str, ClientAggregate]) -> None:
        self._pending, self._cache, self._clients = pending, cache, clients

    def wait(self) -> None:
        self._pending.wait()
        cache, self._cache = self._cache, None  # once
        if cache is not None:
            cache.give_back(self._clients)

    def close(self) -> None:
        self._pending.close()


# the events `_track_resync` follows (final classes: compared by type, once per event recorded)
_RESYNC_EVENTS = frozenset({ClientMarkedForResync, ClientResynchronized})
# StoredEvent(stream_id, version, event_type, schema_version, payload, metadata, global_position), positional:
# one is made for every event recorded (its frozen __init__ set seven fields through object.__setattr__).
_new_stored_event = frozen_constructor(StoredEvent)


class UnreadableSnapshot(RuntimeError):
    """The store handed over a snapshot of a schema version this worker does not read."""


def _readable(stream: LoadedStream) -> None:
    """A snapshot of another schema version must not be read as this one. Its stream's earlier events were not
    loaded with it, so it cannot be skipped here either: the store must leave such snapshots out (the PostgreSQL
    store reads only ``SNAPSHOT_SCHEMA_VERSION``) and hand over the whole stream instead."""
    version = stream.snapshot_schema_version
    if version is not None and version != SNAPSHOT_SCHEMA_VERSION:
        raise UnreadableSnapshot(f"{stream.stream_id}: snapshot v{stream.snapshot_version} has schema version "
                                 f"{version}; this worker reads {SNAPSHOT_SCHEMA_VERSION}")
