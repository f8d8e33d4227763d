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
    if args.json:
        print_json({"partitions": rows, "read_model": freshness})
        return 0
    print_table(rows, ["group", "topic", "partition", "committed", "end", "lag"])
    newest = freshness["newest_change_at"]
    age = freshness["age_s"]
    print(f"\nread model: newest Salesforce change {newest or '-'}" + (f" ({age:.0f}s ago)" if age is not None else ""))
    return 0


def _freshness(ops: Operations) -> dict[str, Any]:
    stamp = ops.client_queries().newest_change_at()
    age = (datetime.now(UTC) - stamp).total_seconds() if stamp else None
    return {"newest_change_at": stamp.isoformat() if stamp else None, "age_s": age}
