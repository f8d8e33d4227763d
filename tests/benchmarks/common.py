"""Small pieces shared by the orchestrator and the stage processes."""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MiB."""
    try:
        with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}" + (f"?{query}" if query else "")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Span:
    """Steady-state throughput: from the end of the first batch to the end of the last, the first batch's items
    left out, so start-up (connections, group join, first fetch) and the idle tail are not counted."""

    def __init__(self) -> None:
        self.first_end: float | None = None
        self.last_end: float | None = None
        self.first_cpu = self.last_cpu = 0.0  # the process's CPU time at those two ends
        self.first_items = 0
        self.first_events = 0
        self.items = 0
        self.events = 0
        self.batches = 0
        self.dead_letters = 0

    def end(self, items: int, events: int = 0, dead_letters: int = 0) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        if self.first_end is None:
            self.first_end, self.first_items, self.first_events, self.first_cpu = now, items, events, cpu
        self.last_end, self.last_cpu = now, cpu
        self.items += items
        self.events += events
        self.batches += 1
        self.dead_letters += dead_letters

    def figures(self) -> dict[str, Any]:
        seconds = (self.last_end - self.first_end) if self.first_end is not None and self.last_end else 0.0
        counted = self.items - self.first_items
        counted_events = self.events - self.first_events
        return {
            "items": self.items,
            "events": self.events,
            "batches": self.batches,
            "dead_letters": self.dead_letters,
            "steady_seconds": seconds,
            "per_s": counted / seconds if seconds > 0 else None,
            "events_per_s": counted_events / seconds if seconds > 0 else None,
            # CPU per item in the same window (all threads of the process): below the wall time per item, it waited
            "steady_cpu_us_per_item": (self.last_cpu - self.first_cpu) / counted * 1e6 if counted > 0 else None,
        }
