"""Upcasters turn stored events of an old schema version into the current shape, on read.

Each step is named and keyed by (event type, from version): `upcast_v1_v2` turns v1 into v2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker.domain.events import EVENT_TYPES

Payload = Mapping[str, Any]
Upcaster = Callable[[Payload], dict[str, Any]]


class Upcasters:
    def __init__(self, steps: Mapping[tuple[str, int], Upcaster] | None = None) -> None:
        self._steps = dict(steps or {})

    def upcast(self, event_type: str, version: int, payload: Payload) -> tuple[int, Payload]:
        """Apply every step from ``version`` up to the current schema version of ``event_type``."""
        current = EVENT_TYPES[event_type].schema_version if event_type in EVENT_TYPES else version
        while version < current:
            step = self._steps.get((event_type, version))
            if step is None:
                raise LookupError(f"no upcaster for {event_type} v{version} -> v{version + 1}")
            payload = step(payload)
            version += 1
        return version, payload


# The registry of real steps; empty while every event is at version 1.
DEFAULT_UPCASTERS = Upcasters({})
