"""`worker query client|clients|history|counts`: the read models, as tables or `--json`."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

import pydantic

from worker.application.queries import (
    ClientNotFound,
    ClientStatusHistory,
    CountClientsByStatus,
    GetClient,
    ListClients,
)
from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import (
    EXIT_USAGE,
    CliError,
    add_connection_options,
    print_json,
    print_table,
)

LIST_COLUMNS = ["client_id", "name", "status", "type", "industry", "billing_country", "deleted", "version"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("query", help="read the client read models")
    sub = parser.add_subparsers(dest="query_command", required=True, metavar="QUERY")

    one = sub.add_parser("client", help="one client by its Salesforce id")
    one.add_argument("client_id")
    history = sub.add_parser("history", help="a client's status history")
    history.add_argument("client_id")
    many = sub.add_parser("clients", help="clients, filtered, sorted and paged")
    for name in ("status", "type", "industry", "billing-country", "name-prefix"):
        many.add_argument(f"--{name}")
    many.add_argument("--changed-since", type=datetime.fromisoformat, metavar="ISO")
    many.add_argument("--include-deleted", action="store_true")
    many.add_argument("--sort", choices=["client_id", "name", "changed"], default="client_id")
    many.add_argument("--limit", type=int, default=50)
    many.add_argument("--cursor", help="the next_cursor of the previous page")
    counts = sub.add_parser("counts", help="clients by status")
    counts.add_argument("--include-deleted", action="store_true")
    for action in (one, history, many, counts):
        action.add_argument("--json", action="store_true")
        add_connection_options(action, kafka=False)
        action.set_defaults(func=_run)


def _query(args: argparse.Namespace) -> Any:
    if args.query_command == "client":
        return GetClient(client_id=args.client_id)
    if args.query_command == "history":
        return ClientStatusHistory(client_id=args.client_id)
    if args.query_command == "counts":
        return CountClientsByStatus(include_deleted=args.include_deleted)
    return ListClients(
        status=args.status, type=args.type, industry=args.industry, billing_country=args.billing_country,
        name_prefix=args.name_prefix, changed_since=args.changed_since, include_deleted=args.include_deleted,
        sort=args.sort, limit=args.limit, cursor=args.cursor,
    )


def _run(args: argparse.Namespace, ops: Operations) -> int:
    try:
        query = _query(args)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        raise CliError(f"invalid {'.'.join(map(str, first['loc']))}: {first['msg']}", EXIT_USAGE) from None
    try:
        result = ops.query_bus().ask(query)
    except ClientNotFound as exc:
        raise CliError(str(exc)) from None
    _print(args, result)
    return 0


def _print(args: argparse.Namespace, result: Any) -> None:
    command = args.query_command
    if args.json:
        print_json(result.model_dump(mode="json") if hasattr(result, "model_dump") else result)
    elif command == "client":
        for key, value in result.items():
            print(f"{key:<26} {'-' if value is None else value}")
    elif command == "history":
        print_table(result, ["version", "old_status", "new_status", "changed_at"])
    elif command == "counts":
        print_table([{"status": k, "clients": v} for k, v in result.items()])
    else:
        print_table(result.items, LIST_COLUMNS)
        if result.next_cursor:
            print(f"next page: --cursor {result.next_cursor}")
