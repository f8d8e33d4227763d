"""`worker offsets show|reset`: the semantics of Kafka's `kafka-consumer-groups --reset-offsets`, with a dry run
by default and a refusal while the group has members."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from worker.adapters.kafka.reset_plan import NoCommittedOffset, ResetSpec, parse_duration, parse_time, plan
from worker.bootstrap_operations import Operations
from worker.config import KafkaSettings
from worker.entrypoints.commands import (
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    add_connection_options,
    print_json,
    print_table,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("offsets", help="show or reset a consumer group's offsets (for replays)")
    sub = parser.add_subparsers(dest="offsets_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="committed offset, end offset and lag per partition; state and members")
    show.add_argument("--group", required=True)
    show.add_argument("--topic", help="default: the topic the worker's group reads")
    show.add_argument("--json", action="store_true")
    add_connection_options(show, database=False)
    show.set_defaults(func=_show)

    reset = sub.add_parser("reset", help="move a stopped group's offsets (dry run unless --execute)")
    reset.add_argument("--group", required=True)
    reset.add_argument("--topic", required=True)
    add_reset_arguments(reset)
    reset.set_defaults(func=_reset)


def add_reset_arguments(parser: argparse.ArgumentParser, *, only_datetime: bool = False) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-datetime", metavar="ISO", help="first offset at or after this time (else the end)")
    if not only_datetime:
        target.add_argument("--to-earliest", action="store_true")
        target.add_argument("--to-latest", action="store_true")
        target.add_argument("--by-duration", metavar="DURATION", help="ISO-8601 duration back from now, e.g. PT1H")
        target.add_argument("--shift-by", type=int, metavar="N")
        target.add_argument("--to-offset", type=int, metavar="N")
        parser.add_argument("--partitions", help="comma-separated partitions (default: all)")
    parser.add_argument("--execute", action="store_true", help="apply; without it nothing changes")
    parser.add_argument("--json", action="store_true")
    add_connection_options(parser, database=False)


def _default_topic(args: argparse.Namespace, settings: Any) -> str:
    if args.topic:
        return str(args.topic)
    k: KafkaSettings = settings.kafka
    topics: dict[str, str] = {k.ingest_group: k.cdc_topic, k.projector_group: k.events_topic}
    return topics.get(str(args.group), k.cdc_topic)


def _show(args: argparse.Namespace, ops: Operations) -> int:
    topic = _default_topic(args, ops.settings)
    admin = ops.admin()
    info = admin.describe_group(args.group)
    rows = admin.partition_lag(args.group, topic)
    if args.json:
        print_json({"group": info.group, "state": info.state, "members": info.members, "partitions": rows})
        return 0
    print(f"group {info.group}: {info.state}, {len(info.members)} member(s)")
    for member in info.members:
        print(f"  {member}")
    print_table(rows, ["topic", "partition", "committed", "end", "lag"])
    return 0


def spec_of(args: argparse.Namespace) -> ResetSpec:
    try:
        if getattr(args, "to_earliest", False):
            return ResetSpec("earliest")
        if getattr(args, "to_latest", False):
            return ResetSpec("latest")
        if getattr(args, "to_offset", None) is not None:
            return ResetSpec("offset", args.to_offset)
        if getattr(args, "shift_by", None) is not None:
            return ResetSpec("shift", args.shift_by)
        if getattr(args, "by_duration", None):
            moment = datetime.now(UTC) - parse_duration(args.by_duration)
            return ResetSpec("datetime", int(moment.timestamp() * 1000))
        return ResetSpec("datetime", int(parse_time(args.to_datetime).timestamp() * 1000))
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def reset_group(args: argparse.Namespace, ops: Operations, group: str, topic: str) -> list[Any]:
    """Plan (and with --execute apply) a reset; refused while the group has members."""
    spec = spec_of(args)
    admin = ops.admin()
    members = admin.active_members(group)
    if members:
        raise CliError(
            f"refused: group {group!r} has {len(members)} active member(s): {', '.join(members[:3])}; "
            "stop its workers first (offsets of a live group cannot be moved safely)",
            EXIT_REFUSED,
        )
    wanted = _partitions(getattr(args, "partitions", None))
    end = {p: o for p, o in admin.latest(topic).items() if wanted is None or p in wanted}
    if wanted and set(wanted) - set(end):
        raise CliError(f"{topic} has no partition(s) {sorted(set(wanted) - set(end))}", EXIT_USAGE)
    earliest = admin.earliest(topic)
    at_time = admin.offsets_for_time(topic, spec.value) if spec.kind == "datetime" else None
    try:
        rows = plan(spec, admin.committed(group, topic), earliest, end, at_time)
    except NoCommittedOffset as exc:
        raise CliError(str(exc)) from None
    if args.execute:
        admin.alter(group, topic, {r.partition: r.new for r in rows})
    return rows


def _reset(args: argparse.Namespace, ops: Operations) -> int:
    rows = reset_group(args, ops, args.group, args.topic)
    _print_plan(args, rows)
    skipped = sum(max(0, r.new - r.current) for r in rows if r.current is not None and r.new is not None)
    if getattr(args, "to_latest", False) and skipped:
        print(f"warning: {skipped} offset(s) of {args.topic} are skipped: the changes they hold are never applied; "
              "run `worker reconcile --since <how far back they go>` (or --full) to read them from Salesforce",
              file=sys.stderr)
    return 0


def _print_plan(args: argparse.Namespace, rows: list[Any]) -> None:
    data = [asdict(r) for r in rows]
    if args.json:
        print_json({"executed": bool(args.execute), "partitions": data})
        return
    for row in data:
        row["move"] = f"{'-' if row['current'] is None else row['current']} -> {row['new']}"
    print_table(data, ["partition", "move", "earliest", "end"])
    print("offsets moved" if args.execute else "dry run: nothing changed (add --execute to apply)")


def _partitions(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise CliError(f"--partitions takes numbers like 0,2 (got {text!r})", EXIT_USAGE) from None
