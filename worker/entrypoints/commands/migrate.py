"""`worker migrate`: apply the numbered SQL migrations."""

from __future__ import annotations

import argparse

import psycopg

from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import CliError, add_connection_options, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("migrate", help="apply database migrations (safe to run twice, or at once)")
    add_connection_options(parser, kafka=False)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace, ops: Operations) -> int:
    try:
        applied, before = ops.migrator()()
    except psycopg.OperationalError as exc:
        raise CliError(f"cannot reach PostgreSQL: {str(exc).strip().splitlines()[0]}") from None
    if args.json:
        print_json({"applied": [m.version for m in applied], "already_applied": [m.version for m in before]})
        return 0
    for m in applied:
        print(f"applied  {m.version:03d}_{m.name}")
    print(f"{len(applied)} applied, {len(before)} already applied")
    return 0
