"""`worker resync ID... [--reason]`, `worker resync --all`, `worker resync status [--json]`: ask the resync role to
read clients (or every Account) from Salesforce, and see its backlog, failing clients and full-resync progress.

Requests are queued in the database; a running `worker run resync` (or `run all`) applies them."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import (
    EXIT_USAGE,
    CliError,
    add_connection_options,
    print_json,
    print_table,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "resync", help="queue reads of clients from Salesforce, or show the resync backlog (`resync status`)",
        description="worker resync ID... | worker resync --all | worker resync status [--json]",
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="Salesforce Account ids (15 or 18 characters), "
                                                             "or `status`")
    parser.add_argument("--all", action="store_true", help="read every Account (a full resync)")
    parser.add_argument("--reason", help="recorded with the request (default: operator and command)")
    parser.add_argument("--failing", type=int, default=20, metavar="N", help="status: failing clients shown")
    parser.add_argument("--json", action="store_true", help="status: as JSON")
    add_connection_options(parser, kafka=False)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace, ops: Operations) -> int:
    from worker.bootstrap import resync_disabled_reason

    if args.ids == ["status"]:
        if args.all:
            raise CliError("`resync status` takes no --all", EXIT_USAGE)
        action = "status"
    elif args.all and not args.ids:
        action = "all"
    elif args.ids and not args.all:
        action = "ids"
    else:
        raise CliError("give client ids, --all, or status (not both ids and --all)", EXIT_USAGE)
    settings = ops.settings
    disabled = resync_disabled_reason(settings, settings.salesforce.auth.value != "none")
    queue = ops.resync_queue()
    reason = args.reason or f"requested by {_operator()} (worker resync)"
    if action == "status":
        _status(args, queue, settings, disabled)
        return 0
    if action == "all":
        queued = queue.request_full(reason, None)
        print("full resync queued" if queued else "a full resync is already pending: nothing new queued")
    else:
        count = queue.request(_normalized(args.ids, ops.client_id), reason)
        print(f"{count} client(s) queued for a read from Salesforce")
    if disabled:
        print(f"note: resync is disabled in this configuration ({disabled}); the request waits for a worker "
              "that can read Salesforce")
    return 0


def _normalized(ids: list[str], normalize: Any) -> list[str]:
    out = []
    for raw in ids:
        client_id = normalize(raw)
        if client_id is None:
            raise CliError(f"not a Salesforce Account id: {raw!r} (15 or 18 letters and digits)", EXIT_USAGE)
        out.append(client_id)
    return sorted(set(out))


def _status(args: argparse.Namespace, queue: Any, settings: Any, disabled: str | None) -> None:
    status = queue.status(settings.resync.max_attempts, args.failing)
    data = {
        "enabled": disabled is None,
        "disabled_reason": disabled,
        "backlog": status.backlog,
        "due_now": status.due,
        "oldest_age_s": status.oldest_age_s,
        "failing_count": status.failing_count,
        "failing": [
            {"client_id": f.client_id, "attempts": f.attempts, "last_error": f.last_error,
             "next_attempt_at": f.next_attempt_at}
            for f in status.failing
        ],
        "full_resyncs": status.full,
    }
    if args.json:
        print_json(data)
        return
    state = "enabled" if disabled is None else f"DISABLED: {disabled}"
    print(f"resync          {state}")
    print(f"backlog         {status.backlog} client(s), {status.due} due now")
    print(f"oldest request  {_age(status.oldest_age_s)}")
    print(f"failing         {status.failing_count} client(s) (>= {settings.resync.max_attempts} failed reads)")
    if status.failing:
        print()
        print_table(data["failing"], ["client_id", "attempts", "next_attempt_at", "last_error"])
    if status.full:
        print()
        print_table(status.full, ["id", "phase", "pages", "records", "started_at", "attempts", "claimed_by",
                                  "reason", "last_error"])


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
