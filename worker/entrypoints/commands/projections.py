"""`worker projections rebuild [--source topic|event-store]`: truncate the read models and replay."""

from __future__ import annotations

import argparse
import sys
import time

from worker.entrypoints.commands import (
    EXIT_REFUSED,
    CliError,
    add_connection_options,
    print_json,
    settings_from,
)


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


def _rebuild(args: argparse.Namespace) -> int:
    from worker.adapters.avro import ClientEventCodec
    from worker.adapters.kafka.consumer import consumer_config
    from worker.adapters.kafka.groups import active_members
    from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
    from worker.adapters.postgres.read_models import PostgresReadModels
    from worker.roles.projector import ProjectorProcessor
    from worker.roles.rebuild import rebuild_from_event_store, rebuild_from_topic

    settings = settings_from(args)
    group = settings.kafka.projector_group
    members = active_members(settings.kafka, group)
    if members:
        raise CliError(
            f"refused: the projector group {group!r} has {len(members)} active member(s) "
            f"({', '.join(members[:3])}); stop the projectors first",
            EXIT_REFUSED,
        )
    pg = settings.postgres
    pool = make_pool(pg.url.get_secret_value(), 2, pg.connect_timeout_s)
    models = PostgresReadModels(pool)
    started = time.monotonic()
    try:
        if args.source == "event-store":
            count = rebuild_from_event_store(PostgresEventStore(pool), models, _progress)
        else:
            processor = ProjectorProcessor(ClientEventCodec.from_directory(), models)
            conf = consumer_config(settings.kafka, group)
            count = rebuild_from_topic(conf, settings.kafka.events_topic, processor, models, _progress)
    finally:
        pool.close()
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
