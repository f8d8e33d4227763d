"""The chaos workload keeps every client's changes in one partition, in the workload's order, whatever the
partition count: that is what lets a run on 8 partitions be compared with one on a single partition."""

from __future__ import annotations

from collections import defaultdict

from tests.chaos.workload import build
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.adapters.salesforce.event_parser import parse
from worker.adapters.salesforce.schemas import SchemaResolver


def test_every_client_named_by_a_change_lands_in_one_partition() -> None:
    changes, mix = build(3000, seed=5)
    assert mix["UPDATE (merged, several records)"] > 0 and mix["POISON"] > 0
    schemas = SchemaResolver()
    partitions: dict[str, set[int]] = defaultdict(set)
    merged = 0
    for change in changes:
        try:
            ids = parse(change.value, change.headers, schemas=schemas).record_ids
        except ChangeEventParseError:
            ids = (change.key.decode(),)  # poison: only its key names a client
        merged += len(ids) > 1
        for cid in ids:
            partitions[cid].add(change.partition(8))
    assert merged == mix["UPDATE (merged, several records)"]
    assert {cid: p for cid, p in partitions.items() if len(p) > 1} == {}
    assert len({p for parts in partitions.values() for p in parts}) == 8  # and they still spread over all 8


def test_the_same_seed_builds_the_same_workload() -> None:
    first, _ = build(500, seed=9)
    again, _ = build(500, seed=9)
    assert first == again
