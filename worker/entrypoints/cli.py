"""The `worker` command line: one module per command group under `entrypoints/commands`.

Exit codes: 0 ok, 1 error, 2 usage, 3 refused (e.g. a consumer group still has members), 4 drift left
(`worker reconcile`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from worker import __version__
from worker.bootstrap_operations import Operations
from worker.config import SettingsError
from worker.entrypoints.commands import (
    CliError,
    backfill,
    cdc,
    config,
    dlq,
    lag,
    migrate,
    offsets,
    projections,
    query,
    reconcile,
    replay,
    resync,
    run,
    settings_from,
    topics,
)

# Each module exposes `register(subparsers)`, whose commands are `func(args, ops)`: ops (bootstrap's
# Operations) builds what a command uses. The order is the order of `worker --help`.
COMMAND_MODULES = (run, migrate, topics, cdc, dlq, resync, backfill, reconcile, offsets, replay, projections, query,
                   lag, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worker", description="Salesforce CDC -> event-sourced client model, as Kafka consumer groups."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


APP_NAME_PREFIX = "salesforce-cdc-worker"
_named: str | None = None  # the PGAPPNAME this process set last (main() may run several times in one process)


def name_sessions(args: argparse.Namespace) -> str | None:
    """Name every PostgreSQL session of this command after it (libpq's PGAPPNAME, e.g. `salesforce-cdc-worker run
    ingest`), so pg_stat_activity tells the roles apart; an application_name set by the user (PGAPPNAME or the
    URL's `application_name`, which libpq prefers) is left alone. Returns the name in effect through PGAPPNAME."""
    global _named
    name = " ".join([APP_NAME_PREFIX, args.command, *([args.role] if getattr(args, "role", None) else [])])
    current = os.environ.get("PGAPPNAME")
    if current is None or current == _named:
        os.environ["PGAPPNAME"] = _named = name
    return os.environ.get("PGAPPNAME")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name_sessions(args)
    ops = Operations(lambda: settings_from(args))
    try:
        code = args.func(args, ops)
    except SettingsError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a broker or database that refuses: one readable line, not a traceback
        if type(exc).__module__.split(".")[0] not in ("cimpl", "confluent_kafka", "psycopg", "psycopg_pool"):
            raise
        print(f"worker: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
              file=sys.stderr)
        return 1
    finally:
        ops.close()
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
