"""`worker config show`: the effective settings, secrets masked, and whether the database is durable."""

from __future__ import annotations

import argparse

from worker.bootstrap_operations import Operations
from worker.config import masked
from worker.entrypoints.commands import print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("config", help="show the effective settings")
    sub = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="print the effective settings with secrets masked")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace, ops: Operations) -> int:
    data = masked(ops.settings)
    database = ops.database_durability()
    if args.json:
        print_json({**data, "database": database})
        return 0
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                print(f"WORKER_{section.upper()}__{key.upper()}={_plain(value)}")
        else:
            print(f"WORKER_{section.upper()}={_plain(values)}")
    print(f"# PostgreSQL: {database['detail']}")
    return 0


def _plain(value: object) -> str:
    return "" if value is None else str(value)
