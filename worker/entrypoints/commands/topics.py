"""`worker topics create|list`: the input, domain-event and dead-letter topics."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import (
    EXIT_ERROR,
    add_connection_options,
    print_json,
    print_table,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("topics", help="create the worker's Kafka topics")
    sub = parser.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create missing topics (idempotent); report partition mismatches")
    add_connection_options(create, database=False)
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_create)


def _create(args: argparse.Namespace, ops: Operations) -> int:
    outcomes = ops.admin().create_worker_topics()
    rows = [asdict(o) for o in outcomes]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "status", "detail"])
    failed = [o for o in outcomes if o.status in ("error", "mismatch")]
    return EXIT_ERROR if failed else 0
