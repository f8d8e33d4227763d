"""The chaos workload: the benchmark's seeded CDC mix (creates, updates with nulls, deletes/undeletes, merged
multi-record updates, gap events, poison), materialised once, with a partition for every message.

Both runs must reach the same state, so every client's changes must be consumed in the workload's order, whatever
the partition count: a merged update names several clients, so those clients share one partition (a union-find
over the clients each message names), and a message goes to its component's partition, explicitly. One partition
(the reference run) is the workload's total order; on 8 partitions each client still sees its changes in order.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.benchmarks.workload import Workload

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Change:
    key: bytes
    value: bytes
    headers: Headers
    group: str  # the clients' component: the same group always lands in the same partition

    def partition(self, partitions: int) -> int:
        return zlib.crc32(self.group.encode()) % partitions


class _NamingWorkload(Workload):
    """The benchmark's workload, remembering which clients the message just yielded names."""

    named: list[str]

    def _emit(self, label: str, change_type: str, ids: list[str], *args: Any, **kwargs: Any) -> Any:
        self.named = list(ids)
        return super()._emit(label, change_type, ids, *args, **kwargs)

    def _poison(self, rng: Any, key: str) -> Any:
        self.named = [key]
        return super()._poison(rng, key)


class _Components:
    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def root(self, item: str) -> str:
        parent = self._parent.setdefault(item, item)
        while parent != self._parent[parent]:
            self._parent[parent] = self._parent[self._parent[parent]]
            parent = self._parent[parent]
        self._parent[item] = parent
        return parent

    def join(self, items: list[str]) -> None:
        roots = sorted({self.root(item) for item in items})
        for other in roots[1:]:
            self._parent[other] = roots[0]


def build(n: int, seed: int) -> tuple[list[Change], Counter[str]]:
    """``n`` changes over ``n // 10`` clients (at least 50), and the realised mix by kind."""
    workload = _NamingWorkload(n, max(50, n // 10), seed, "pubsub", tag="CH")
    raw: list[tuple[bytes, bytes, Headers, list[str]]] = []
    components = _Components()
    for key, value, headers in workload.messages():
        raw.append((key, value, headers, workload.named))
        components.join(workload.named)
    changes = [Change(key, value, headers, components.root(named[0])) for key, value, headers, named in raw]
    return changes, Counter(workload.counts)
