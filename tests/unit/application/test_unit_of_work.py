"""Loading through the unit of work: snapshots every N events, upcasters on read, one batch of changes."""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Collection
from typing import Any

import pytest

from tests.fakes.event_store import MemoryStore
from tests.harness import change_phone, register
from worker.application.bus import CommandBus, default_middleware
from worker.application.errors import ConcurrencyConflict
from worker.application.handlers import HandlerContext
from worker.application.ports import LoadedStream, StoredEvent
from worker.application.unit_of_work import (
    SNAPSHOT_SCHEMA_VERSION,
    AggregateCache,
    ClientBatch,
    UnreadableSnapshot,
    deep_size,
)
from worker.application.upcasting import Upcasters
from worker.domain import ClientAggregate, StatusRule
from worker.domain.values import is_shared

A = "001000000000001AAA"


def run(store: MemoryStore, commands: list[Any], interval: int = 3, upcasters: Upcasters | None = None) -> ClientBatch:
    batch = ClientBatch(store, snapshot_interval=interval, worker_version="test",
                        **({"upcasters": upcasters} if upcasters else {}))
    bus = CommandBus(middleware=default_middleware())
    for cmd in commands:
        bus.handle(cmd, HandlerContext(batch, StatusRule()))
    store.commit(batch.changes())
    return batch


def test_a_snapshot_is_taken_every_n_events_and_loading_replays_only_later_events() -> None:
    store = MemoryStore()
    run(store, [register(A)] + [change_phone(A, str(n)) for n in range(4)])
    assert store.snapshots[A][0] == 3
    batch = run(store, [change_phone(A, "last")])
    assert batch.snapshot_hits == 1 and batch.events_replayed == 2
    assert batch.get(A).version == 6 and batch.get(A).details.phone == "last"


def test_state_from_a_snapshot_equals_state_from_every_event() -> None:
    store = MemoryStore()
    run(store, [register(A)] + [change_phone(A, str(n)) for n in range(5)])
    from_snapshot = run(store, []).get(A).snapshot()
    store.snapshots.clear()
    assert run(store, []).get(A).snapshot() == from_snapshot


def test_stored_events_of_an_old_schema_version_are_upcast_on_read() -> None:
    store = MemoryStore()
    run(store, [register(A)])
    old = store.events[0]
    legacy_payload = {k: v for k, v in old.payload.items() if k != "status"}  # v0 had no status
    store.events[0] = StoredEvent(old.stream_id, old.version, old.event_type, 0, legacy_payload, old.metadata)

    def upcast_v0_v1(payload: Any) -> dict[str, Any]:
        return {**payload, "status": "active"}

    batch = run(store, [], upcasters=Upcasters({("ClientRegistered", 0): upcast_v0_v1}))
    assert batch.get(A).status.value == "active"
    with pytest.raises(LookupError, match="no upcaster"):
        run(store, [], upcasters=Upcasters({})).get(A)


def test_metadata_carries_correlation_and_causation_ids() -> None:
    store = MemoryStore()
    run(store, [register(A)])
    meta = store.events[0].metadata
    assert meta["correlation_id"].startswith("tx-") and meta["causation_id"].startswith("test:")
    assert meta["event_id"] and meta["worker_version"] == "test" and meta["command"] == "RegisterClient"


def cached_run(store: MemoryStore, cache: AggregateCache, commands: list[Any]) -> ClientBatch:
    batch = ClientBatch(store, snapshot_interval=1000, worker_version="test", cache=cache)
    bus = CommandBus(middleware=default_middleware())
    for cmd in commands:
        bus.handle(cmd, HandlerContext(batch, StatusRule()))
    batch.commit()
    return batch


# A budget (838 bytes) no aggregate of these tests fits in as objects (>= 944 bytes) and three fit in packed (~280
# bytes each): the cache keeps every one packed.
PACKING_MIB = 0.0008
caches = pytest.mark.parametrize("mib", [0, PACKING_MIB], ids=["objects", "packed"])


@caches
def test_a_committed_batch_leaves_its_aggregates_cached_and_the_next_batch_loads_nothing(mib: float) -> None:
    store, cache = MemoryStore(), AggregateCache(10, mib)
    cached_run(store, cache, [register(A), change_phone(A, "1")])
    batch = cached_run(store, cache, [change_phone(A, "2")])
    assert batch.events_replayed == 0 and cache.hits == 1
    assert [e.version for e in store.events] == [1, 2, 3] and batch.get(A).details.phone == "2"


@caches
def test_a_failed_batch_gives_nothing_back_and_a_stream_moved_on_elsewhere_is_reloaded(mib: float) -> None:
    store, cache = MemoryStore(), AggregateCache(10, mib)
    cached_run(store, cache, [register(A)])
    assert cache.packed == (1 if mib else 0)
    batch = ClientBatch(store, snapshot_interval=1000, worker_version="test", cache=cache)
    CommandBus(middleware=default_middleware()).handle(change_phone(A, "lost"), HandlerContext(batch, StatusRule()))
    assert len(cache) == 0  # taken by the batch, which never commits: nothing half-applied stays cached
    reloaded = cached_run(store, cache, [change_phone(A, "kept")])
    assert reloaded.events_replayed == 1 and reloaded.get(A).details.phone == "kept"

    other = MemoryStore()  # another writer appends to A behind the cache's back
    other.events = list(store.events)
    cached_run(other, AggregateCache(10, mib), [change_phone(A, "elsewhere")])
    store.events = other.events
    after = cached_run(store, cache, [change_phone(A, "next")])
    assert after.events_replayed == 3  # the stale cached aggregate was dropped and the stream reloaded
    assert [e.version for e in store.events] == [1, 2, 3, 4]


@caches
def test_checked_at_the_commit_a_cached_stream_moved_on_elsewhere_refuses_a_decision_taken_on_it(mib: float) -> None:
    """With the versions checked at the commit (ingest's way), a decision taken on a stale cached aggregate is
    never written, even one that wrote nothing: here the stale state says the phone is already "1", while another
    writer set it to "2", so the change to "1" would be lost as a no-op."""
    store, cache = MemoryStore(), AggregateCache(10, mib)
    cached_run(store, cache, [register(A), change_phone(A, "1")])
    other = MemoryStore()
    other.events = list(store.events)
    cached_run(other, AggregateCache(10, mib), [change_phone(A, "2")])
    store.events = other.events

    def decide(phone: str) -> ClientBatch:
        batch = ClientBatch(store, snapshot_interval=1000, worker_version="test", cache=cache)
        batch.preload([A], check_later=True)
        CommandBus(middleware=default_middleware()).handle(change_phone(A, phone), HandlerContext(batch, StatusRule()))
        return batch

    stale = decide("1")
    assert stale.changes().events == [] and stale.get(A).version == 2  # the stale aggregate saw nothing to do
    with pytest.raises(ConcurrencyConflict, match="moved on"):
        stale.commit()
    assert len(cache) == 0 and len(store.events) == 3  # nothing written, nothing given back
    retried = decide("1")  # as ingest retries a conflict: on the stream reloaded
    retried.commit()
    assert [e.version for e in store.events] == [1, 2, 3, 4] and retried.get(A).details.phone == "1"
    assert all(p.settled for p in store.pending)


def test_versions_asked_for_and_not_read_are_given_back_when_the_batch_is_closed() -> None:
    store, cache = MemoryStore(), AggregateCache(10)
    cached_run(store, cache, [register(A)])
    batch = ClientBatch(store, snapshot_interval=1000, worker_version="test", cache=cache)
    batch.preload([A], check_later=True)
    assert [p.settled for p in store.pending] == [False]
    batch.close()
    batch.close()
    assert [p.settled for p in store.pending] == [True]


@caches
def test_the_cache_evicts_the_least_recently_used_beyond_its_capacity(mib: float) -> None:
    store, cache = MemoryStore(), AggregateCache(2, mib)
    ids = [f"00100000000000{n}AAA" for n in range(1, 4)]
    for cid in ids:
        cached_run(store, cache, [register(cid)])
    assert len(cache) == 2 and cache.take([ids[0]]) == {} and set(cache.take(ids[1:])) == set(ids[1:])


def test_the_bus_validates_a_command_built_without_validation_and_refuses_it() -> None:
    import pydantic

    from worker.application.commands import RegisterClient

    good = register(A)
    assert good.validated
    broken = RegisterClient.model_construct(**{**dict(good), "client_id": "not-an-id"})
    assert not broken.validated
    batch = ClientBatch(MemoryStore(), snapshot_interval=100, worker_version="test")
    with pytest.raises(pydantic.ValidationError):
        CommandBus(middleware=default_middleware()).handle(broken, HandlerContext(batch, StatusRule()))
    assert batch.changes().events == []


class StaleSnapshotStore(MemoryStore):
    """Hands over its snapshots labelled with another schema version (a store that forgot to leave them out)."""

    def load_streams(self, stream_ids: Collection[str]) -> dict[str, LoadedStream]:
        return {sid: LoadedStream(s.stream_id, s.snapshot, s.snapshot_version, s.events,
                                  snapshot_schema_version=SNAPSHOT_SCHEMA_VERSION + 1)
                for sid, s in super().load_streams(stream_ids).items()}


def test_a_snapshot_of_the_current_schema_version_is_read() -> None:
    store = MemoryStore()
    run(store, [register(A)] + [change_phone(A, str(n)) for n in range(3)])
    current = {sid: LoadedStream(s.stream_id, s.snapshot, s.snapshot_version, s.events, SNAPSHOT_SCHEMA_VERSION)
               for sid, s in store.load_streams([A]).items()}
    store.load_streams = lambda _ids: current  # type: ignore[method-assign]
    batch = run(store, [change_phone(A, "last")])
    assert batch.snapshot_hits == 1 and batch.get(A).details.phone == "last"


def test_a_snapshot_of_another_schema_version_is_never_read_as_this_one() -> None:
    store = StaleSnapshotStore()
    run(store, [register(A)] + [change_phone(A, str(n)) for n in range(3)])
    assert store.snapshots[A][0] == 3
    with pytest.raises(UnreadableSnapshot, match="schema version 2; this worker reads 1"):
        run(store, [change_phone(A, "last")])


def registered_clients(count: int) -> dict[str, ClientAggregate]:
    """``count`` registered clients, each with three later changes (every aggregate the same size)."""
    ids = [f"001{i:015d}" for i in range(count)]
    batch = cached_run(MemoryStore(), AggregateCache(0), [register(cid) for cid in ids]
                       + [change_phone(cid, f"+33 1 {n:08d}") for n, cid in enumerate(ids * 3)])
    return {cid: batch.get(cid) for cid in ids}


def test_past_its_memory_budget_the_cache_packs_the_least_recently_used_and_keeps_them_all() -> None:
    aggregates = registered_clients(200)
    snapshots = {cid: json.dumps(a.snapshot()) for cid, a in aggregates.items()}
    cache = AggregateCache(10_000, max_mib=0.1)  # 200 as objects take ~0.3 MiB, packed ~0.06 MiB
    cache.give_back(aggregates)
    assert len(cache) == 200 and 0 < cache.packed < 200
    assert cache.nbytes <= 0.1 * 1024 * 1024
    assert 1000 < cache.entry_bytes < 4000
    # objects take at most a third of the budget (what packing frees is not given back to the system)
    assert 0 < (len(cache) - cache.packed) * cache.entry_bytes <= 0.1 * 1024 * 1024 * AggregateCache.LIVE_SHARE
    last = list(aggregates)[-1]
    assert cache.take([last])[last] is aggregates[last]  # the most recently given back stay objects
    taken = cache.take(aggregates)
    assert len(taken) == 199 and len(cache) == 0 and cache.nbytes == 0
    assert all(json.dumps(a.snapshot()) == snapshots[cid] for cid, a in taken.items())


def test_when_even_packed_they_overflow_the_budget_the_least_recently_used_go() -> None:
    aggregates = registered_clients(200)
    ids = list(aggregates)
    cache = AggregateCache(10_000, max_mib=0.01)
    cache.give_back(aggregates)
    assert 10 < len(cache) == cache.packed < 200 and cache.nbytes <= 0.01 * 1024 * 1024
    assert cache.take(ids[:1]) == {}  # the least recently given back went
    assert list(cache.take(ids[-1:])) == ids[-1:]  # the most recently given back stay


def test_an_aggregate_with_no_packed_form_goes_when_it_would_be_packed() -> None:
    aggregates = registered_clients(3)
    odd = next(iter(aggregates.values()))
    odd.details = odd.details.with_changes({"extra.Tags__c": ["a", "b"]})  # a list: marshal has no exact form
    cache = AggregateCache(10, max_mib=PACKING_MIB)
    cache.give_back(aggregates)
    assert odd.client_id not in cache.take([odd.client_id]) and len(cache) == cache.packed == 2


def test_the_cache_estimate_is_the_memory_its_entries_really_take() -> None:
    """Objects and packed entries together, as tracemalloc sees them once only the cache holds them."""
    states = [json.dumps(a.snapshot()) for a in registered_clients(300).values()]
    cache = AggregateCache(10_000, max_mib=0.35)  # some kept as objects (LIVE_SHARE of the budget), most packed
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        copies = [ClientAggregate.from_snapshot(json.loads(state)) for state in states]
        cache.give_back({copy.client_id: copy for copy in copies})
        del copies
        gc.collect()
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 20 < len(cache) - cache.packed < 150 < cache.packed and len(cache) == 300
    # tracemalloc counts the bytes asked for, the estimate the blocks handed out (rounded up to 16 bytes)
    assert allocated <= cache.nbytes <= allocated * 1.15


def test_the_estimate_of_an_aggregate_kept_as_objects_is_the_memory_it_really_takes() -> None:
    store = MemoryStore()
    ids = [f"001{i:015d}" for i in range(50)]
    batch = cached_run(store, AggregateCache(0), [register(cid) for cid in ids]
                       + [change_phone(cid, f"+33 1 {n:08d}") for n, cid in enumerate(ids * 3)])
    states = [json.dumps(batch.get(cid).snapshot()) for cid in ids] * 20  # each copy built anew from its text
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        copies = [ClientAggregate.from_snapshot(json.loads(state)) for state in states]
        allocated = (tracemalloc.get_traced_memory()[0] - before) / len(copies)
    finally:
        tracemalloc.stop()
    estimated = sum(deep_size(copy) for copy in copies[:50]) / 50
    # tracemalloc counts the bytes asked for, deep_size the blocks handed out (rounded up to 16 bytes)
    assert allocated <= estimated <= allocated * 1.15


@caches
def test_the_cache_keeps_one_string_for_a_client_id(mib: float) -> None:
    store, cache = MemoryStore(), AggregateCache(10, mib)
    cached_run(store, cache, [register(A)])
    again = "".join(A)  # an equal string, another object (as a later message decodes it)
    aggregate = cache.take([again])[again]
    cache.give_back({again: aggregate})
    assert next(iter(cache._packed if mib else cache._live)) is aggregate.client_id


def test_an_aggregate_loaded_from_the_store_holds_the_strings_shared_by_all_clients() -> None:
    from worker.application.commands import ClientData, RegisterClient

    def registered(cid: str) -> RegisterClient:
        industry = "".join(list("Biotechnology"))  # an equal string, another object: not the one kept for all
        return register(cid).model_copy(update={"data": ClientData(name="Acme", industry=industry)})

    store = MemoryStore()
    run(store, [registered(A)], interval=1)  # loaded from its snapshot
    run(store, [registered("001000000000002AAA")], interval=100)  # loaded from its events
    for cid in (A, "001000000000002AAA"):
        loaded = ClientBatch(store, snapshot_interval=100, worker_version="test").get(cid)
        assert loaded.details.industry == "Biotechnology" and is_shared(loaded.details.industry)
