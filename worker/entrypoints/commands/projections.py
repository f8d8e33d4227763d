"""`worker projections rebuild [--source topic|event-store]`: truncate the read models and replay."""

from __future__ import annotations

import argparse
import sys
import time

from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import (
    EXIT_REFUSED,
    CliError,
    add_connection_options,
    print_json,
)
from worker.roles.rebuild import rebuild_from_event_store, rebuild_from_topic


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("projections", help="rebuild the read models")
    sub = parser.add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    rebuild = sub.add_parser(
        "rebuild", help="truncate the projector's tables and replay (refused while the projector group is active)"
    )
    rebuild.add_argument("--source", choices=["topic", "event-store"], default="topic",
                         help="event-store works even when the topic's retention has expired")
    rebuild.add_argument("--json", action="store_true")
    add_connection_options(rebuild)
    rebuild.set_defaults(func=_rebuild)


def _rebuild(args: argparse.Namespace, ops: Operations) -> int:
    kafka = ops.settings.kafka
    group = kafka.projector_group
    members = ops.admin().active_members(group)
    if members:
        raise CliError(
            f"refused: the projector group {group!r} has {len(members)} active member(s) "
            f"({', '.join(members[:3])}); stop the projectors first",
            EXIT_REFUSED,
        )
    models = ops.read_models()
    started = time.monotonic()
    if args.source == "event-store":
        count = rebuild_from_event_store(ops.event_log(), models, _progress)
    else:
        count = rebuild_from_topic(ops.consumer_config(group), kafka.events_topic, ops.projector(), models, _progress)
    sys.stderr.write("\n")
    seconds = time.monotonic() - started
    if args.json:
        print_json({"source": args.source, "events": count, "seconds": round(seconds, 3)})
    else:
        print(f"rebuilt the read models from the {args.source}: {count} events replayed")
    return 0


def _progress(done: int, total: int | None) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\rreplayed {done}" + (f"/{total}" if total else "") + " events")
        sys.stderr.flush()
