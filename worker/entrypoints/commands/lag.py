"""`worker lag [--json]`: per group and partition, committed offset, end offset and lag; and how old the newest
Salesforce change reflected in the read model is."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import add_connection_options, print_json, print_table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("lag", help="consumer lag of the worker's groups and read-model freshness")
    parser.add_argument("--json", action="store_true")
    add_connection_options(parser)
    parser.set_defaults(func=_lag)


def _lag(args: argparse.Namespace, ops: Operations) -> int:
    k = ops.settings.kafka
    rows: list[dict[str, Any]] = []
    for group, topic in ((k.ingest_group, k.cdc_topic), (k.projector_group, k.events_topic)):
        rows += [{"group": group, **row} for row in ops.admin().partition_lag(group, topic)]
    freshness = _freshness(ops)
    cliff = _reconcile_requested(ops)
    if args.json:
        print_json({"partitions": rows, "read_model": freshness, "reconcile_requested": cliff})
        return 0
    # ages are seconds in JSON, durations for people ("3d 4h"): any `*_age_s` of a row becomes an `*_age` column
    columns = ["group", "topic", "partition", "committed", "end", "lag"]
    ages = sorted({key for row in rows for key in row if key.endswith("_age_s")})
    table = [{**row, **{key[:-2]: duration(row.get(key)) for key in ages}} for row in rows]
    print_table(table, columns + [key[:-2] for key in ages])
    newest = freshness["newest_change_at"]
    age = freshness["age_s"]
    print(f"\nread model: newest Salesforce change {newest or '-'}"
          + (f" ({duration(age)} ago)" if age is not None else ""))
    if cliff is not None:
        print(f"retention cliff: input expired before it was read; a reconcile since {cliff['since'] or 'the start'}"
              f" is pending ({cliff['reason']}): run `worker reconcile`")
    return 0


_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def duration(seconds: float | None) -> str | None:
    """A duration in its two largest units: `3d 4h`, `12m 5s`, `45s` (None stays None: the table shows `-`)."""
    if seconds is None:
        return None
    left = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in _UNITS:
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
        elif parts:
            break  # `3d 0h 5m` is read as `3d`: stop at the first zero after the largest unit
        if len(parts) == 2:
            break
    return " ".join(parts)


def _freshness(ops: Operations) -> dict[str, Any]:
    stamp = ops.client_queries().newest_change_at()
    age = (datetime.now(UTC) - stamp).total_seconds() if stamp else None
    return {"newest_change_at": stamp.isoformat() if stamp else None, "age_s": age}


def _reconcile_requested(ops: Operations) -> dict[str, Any] | None:
    """A reconcile a retention cliff asked for and that has not run yet (None: none pending)."""
    pending = ops.reconcile_ledger().pending()
    if pending is None:
        return None
    reason = ops.reconcile_ledger().pending_reason()
    return {"since": pending.since.isoformat() if pending.since else None, "full": pending.full,
            "requests": pending.count, "reason": reason,
            "requested_at": pending.requested_at.isoformat() if pending.requested_at else None}
