"""Ingest with an aggregate cache that packs (or drops) what it keeps decides exactly as one that keeps objects:
the same events, the same snapshots, the same dead letters, whatever the budget."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.workload import build
from tests.unit.roles.ingest_kit import MemoryStore, Message
from worker.adapters.salesforce.decoder import CdcDecoder
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.adapters.salesforce.mapping import FieldMapping
from worker.adapters.salesforce.schemas import SchemaResolver
from worker.application.bus import CommandBus, default_middleware
from worker.application.unit_of_work import AggregateCache, ClientBatch
from worker.domain import StatusRule
from worker.roles.ingest import IngestProcessor

CHANGES, _ = build(1500, seed=13)  # 150 clients, merged updates, gaps, deletes


class PubSubMessage(Message):
    def __init__(self, value: bytes, offset: int, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        super().__init__(value, offset, key)
        self._headers = headers

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers


def ingest(cache: AggregateCache | None) -> tuple[MemoryStore, list[Any]]:
    store = MemoryStore()
    decoder = CdcDecoder(SchemaResolver(), FieldMapping.from_overrides(), cdc_format="auto", own_client_id=None)
    processor = IngestProcessor(
        decoder, (ChangeEventParseError,), CommandBus(middleware=default_middleware()),
        lambda: ClientBatch(store, snapshot_interval=7, worker_version="test", cache=cache), StatusRule(),
    )
    letters = []
    batch = [PubSubMessage(c.value, n, c.key, c.headers) for n, c in enumerate(CHANGES)]
    for start in range(0, len(batch), 50):
        outcome = processor.process(batch[start:start + 50])
        letters += [(d.message.offset(), d.stage, repr(d.error), d.resync) for d in outcome.dead_letters]
    return store, letters


def recorded(store: MemoryStore) -> list[Any]:
    return [(e.stream_id, e.version, e.event_type, e.payload) for e in store.events]


@pytest.mark.parametrize(("mib", "kept"), [(0.02, range(10, 100)), (0.15, range(150, 151))],
                         ids=["all packed, most dropped", "most packed, none dropped"])
def test_a_cache_that_packs_what_it_keeps_decides_as_one_that_keeps_objects(mib: float, kept: range) -> None:
    objects, objects_letters = ingest(AggregateCache(10_000))
    cache = AggregateCache(10_000, mib)
    packed, packed_letters = ingest(cache)
    assert len(cache) in kept and cache.packed > 0.8 * len(cache) and cache.hits > 0
    assert recorded(packed) == recorded(objects) and packed.snapshots == objects.snapshots
    assert packed_letters == objects_letters
