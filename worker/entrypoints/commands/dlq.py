"""`worker dlq list|show|stats|replay|export|audit`: dead letters of a `*.dlq` topic, with their reasons.

Reading never joins or commits an operational group (assign + seek). Replays (`dlq_replay`) go back to the
original topic and partition with a replay count and time, are confirmed by the broker, and are recorded in
`dlq_replays`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker.adapters.kafka.dlq import (
    H_ATTEMPTS,
    H_GROUP,
    H_MESSAGE,
    H_STACKTRACE,
    H_WORKER_VERSION,
)
from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import (
    EXIT_ERROR,
    CliError,
    add_connection_options,
    dlq_replay,
    print_json,
    print_table,
)
from worker.entrypoints.commands.cdc import describe
from worker.entrypoints.commands.dlq_select import records_of, where_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dlq", help="inspect, export and replay dead letters")
    sub = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="one row per dead letter")
    _filters(listing)
    listing.add_argument("--limit", type=int, default=100)
    _common(listing)
    listing.set_defaults(func=_list)

    stats = sub.add_parser("stats", help="counts by error class and stage, with first and last seen")
    _filters(stats)
    _common(stats)
    stats.set_defaults(func=_stats)

    show = sub.add_parser("show", help="one dead letter: headers, stack trace, the original message decoded")
    show.add_argument("id", metavar="PARTITION@OFFSET", help="as `dlq list` shows it (a bare offset if unique)")
    show.add_argument("--topic", help="default: the CDC topic's DLQ")
    show.add_argument("--raw", action="store_true", help="write the original value's bytes to stdout, nothing else")
    _common(show)
    show.set_defaults(func=_show)

    export = sub.add_parser("export", help="dead letters as JSON lines (tickets, offline analysis)")
    _filters(export)
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.add_argument("--output", "-o", default="-", help="a file; - for standard output")
    add_connection_options(export, database=False)
    export.set_defaults(func=_export)

    replay = sub.add_parser("replay", help="re-publish dead letters to their original topic and partition")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--offset", nargs="+", metavar="PARTITION@OFFSET", help="these dead letters")
    which.add_argument("--error-class", help="every dead letter of this error class (short or qualified name)")
    which.add_argument("--since", metavar="TIME", help="every dead letter since TIME (ISO-8601 or a duration: 2h)")
    which.add_argument("--all", action="store_true", help="every dead letter of the topic")
    replay.add_argument("--topic", help="default: the CDC topic's DLQ")
    replay.add_argument("--until", metavar="TIME")
    replay.add_argument("--stage")
    replay.add_argument("--key")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed; change nothing")
    replay.add_argument("--rate", type=float, metavar="N", help="at most N messages per second")
    replay.add_argument("--force", action="store_true", help="also replay dead letters already replayed")
    replay.add_argument("--operator", default=None, help="who replays (default: the login name)")
    replay.add_argument("--note", help="why (kept in the audit table)")
    _common(replay, database=True)
    replay.set_defaults(func=dlq_replay.replay)

    audit = sub.add_parser("audit", help="the replays recorded in the audit table, newest first")
    audit.add_argument("--topic", help="only replays from this DLQ topic")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--json", action="store_true")
    add_connection_options(audit, kafka=False)
    audit.set_defaults(func=_audit)


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", help="default: the CDC topic's DLQ")
    parser.add_argument("--since", metavar="TIME", help="ISO-8601 instant, or a duration back from now (2h, PT30M)")
    parser.add_argument("--until", metavar="TIME")
    parser.add_argument("--error-class", help="short (UnknownSchema) or qualified class name")
    parser.add_argument("--stage", choices=["parse", "translate", "validate", "handle", "project"])
    parser.add_argument("--key", help="the record key (a Salesforce record id)")


def _common(parser: argparse.ArgumentParser, *, database: bool = False) -> None:
    parser.add_argument("--json", action="store_true")
    add_connection_options(parser, database=database)


def _list(args: argparse.Namespace, ops: Operations) -> int:
    _, records = records_of(args, ops)
    rows = [r.summary() for r in records[: args.limit]]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["dlq", "time", "original", "key", "stage", "error", "replays", "message"])
        if len(records) > args.limit:
            print(f"... {len(records) - args.limit} more (raise --limit, or narrow with filters)")
    return 0


def _stats(args: argparse.Namespace, ops: Operations) -> int:
    _, records = records_of(args, ops)
    groups: dict[tuple[str, str | None], list[Any]] = {}
    for r in records:
        groups.setdefault((r.error_class, r.stage), []).append(r)
    stats = [
        {"error": error.rsplit(".", 1)[-1], "error_class": error, "stage": stage, "count": len(rs),
         "first_seen": min(r.time for r in rs), "last_seen": max(r.time for r in rs)}
        for (error, stage), rs in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]
    if args.json:
        print_json(stats)
    else:
        print_table(stats, ["error", "stage", "count", "first_seen", "last_seen"])
        print(f"{len(records)} dead letter(s)")
    return 0


def _show(args: argparse.Namespace, ops: Operations) -> int:
    topic = args.topic or ops.settings.kafka.cdc_dlq_topic
    try:
        record = ops.dlq_reader().find(topic, args.id)
    except LookupError as exc:
        raise CliError(str(exc), EXIT_ERROR) from None
    if args.raw:
        sys.stdout.buffer.write(record.value or b"")
        sys.stdout.flush()
        return 0
    decoded, decode_error = _decode(record, ops)
    if args.json:
        print_json({**record.export(), "decoded": decoded, "decode_error": decode_error})
        return 0
    h = record.headers
    print(f"dead letter {record.id} of {topic}, {record.time}")
    for label, value in (
        ("original", record.original()), ("key", (record.key or b"").decode("utf-8", "replace") or None),
        ("stage", record.stage), ("error", record.error_class), ("message", h.get(H_MESSAGE)),
        ("attempts", h.get(H_ATTEMPTS)), ("group", h.get(H_GROUP)), ("replays", record.replay_count),
        ("worker", h.get(H_WORKER_VERSION)),
    ):
        print(f"  {label:<9} {'-' if value is None else value}")
    print("\nheaders:")
    for name, raw in record.raw_headers:
        if name != H_STACKTRACE:
            print(f"  {name} = {raw.decode('utf-8', 'replace')[:200]}")
    print("\nstack trace:")
    print("  " + (h.get(H_STACKTRACE) or "-").rstrip().replace("\n", "\n  "))
    print("\noriginal message:")
    if decoded is not None:
        print("  " + json.dumps(decoded, indent=2, default=str).replace("\n", "\n  "))
    else:
        print(f"  cannot decode: {decode_error}")
        print(f"  {len(record.value or b'')} bytes; `worker dlq show {record.id} --raw > msg.bin` writes them")
    return 0


def _decode(record: Any, ops: Operations) -> tuple[Any, str | None]:
    """The original message as the worker reads it: a CDC change (as `worker cdc parse` shows it), or for the
    events DLQ the domain event."""
    headers: dict[str, bytes] = dict(record.original_headers())
    try:
        kafka = ops.settings.kafka
        if record.original_topic == kafka.events_topic:
            event_type = headers["event_type"].decode()
            version = int(headers["schema_version"].decode())
            return ops.event_codec().decode(record.value or b"", event_type, version), None
        event = ops.parse_cdc(record.value or b"", headers, fmt=kafka.cdc_format,
                              schemas=ops.schema_resolver(use_salesforce=True))
        return describe(event), None
    except Exception as exc:  # shown to the operator: whatever made the worker fail is the answer here
        return None, f"{type(exc).__name__}: {exc}"


def _export(args: argparse.Namespace, ops: Operations) -> int:
    topic = args.topic or ops.settings.kafka.cdc_dlq_topic
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        for record in ops.dlq_reader().read(topic, where_of(args)):
            out.write(json.dumps(record.export(), default=str) + "\n")
            count += 1
    except LookupError as exc:
        raise CliError(f"{exc} (create the topics with `worker topics create`)") from None
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"exported {count} dead letter(s) from {topic}", file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace, ops: Operations) -> int:
    rows = ops.replay_audit().history(args.topic, args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["replayed_at", "operator", "dlq_topic", "dlq", "error_class", "result", "detail"])
    return 0
