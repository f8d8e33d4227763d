"""`worker dlq list|stats`: the dead letters of a `*.dlq` topic, with their reasons (never joins a group)."""

from __future__ import annotations

import argparse
from collections import Counter

from worker.entrypoints.commands import add_connection_options, print_json, print_table, settings_from


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dlq", help="inspect dead-letter topics")
    sub = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    for name, helptext in (("list", "one row per dead letter"), ("stats", "counts by error class and stage")):
        action = sub.add_parser(name, help=helptext)
        action.add_argument("--topic", help="default: the CDC topic's DLQ")
        action.add_argument("--stage")
        action.add_argument("--error-class")
        action.add_argument("--limit", type=int, default=100)
        action.add_argument("--json", action="store_true")
        add_connection_options(action, database=False)
        action.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from worker.adapters.kafka.dlq import H_CLASS
    from worker.adapters.kafka.dlq_reader import read_dead_letters

    settings = settings_from(args)
    topic = args.topic or settings.kafka.cdc_dlq_topic
    rows = []
    for record in read_dead_letters(settings.kafka, topic):
        row = record.summary()
        if args.stage and row["stage"] != args.stage:
            continue
        if args.error_class and args.error_class not in (record.headers.get(H_CLASS) or ""):
            continue
        rows.append(row)
    if args.dlq_command == "stats":
        counts = Counter((r["error"], r["stage"]) for r in rows)
        stats = [{"error": e, "stage": s, "count": n} for (e, s), n in counts.most_common()]
        if args.json:
            print_json(stats)
        else:
            print_table(stats)
        return 0
    rows = rows[: args.limit]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["dlq", "original", "key", "stage", "error", "message"])
    return 0
