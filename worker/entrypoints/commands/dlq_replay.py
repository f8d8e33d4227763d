"""`worker dlq replay`: dead letters back to their original topic and partition, each outcome audited.

The audit read, the publishing and the audit write are one locked transaction per DLQ topic: two replays at once
never both publish a record, and a record that was not acknowledged is recorded as failed on its own (a rerun
publishes only what did not go through).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections import Counter
from typing import Any

from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import EXIT_ERROR, EXIT_USAGE, CliError, print_json, print_table
from worker.entrypoints.commands.dlq_select import records_of


def replay(args: argparse.Namespace, ops: Operations) -> int:
    if args.rate is not None and args.rate <= 0:
        raise CliError("--rate takes a positive number of messages per second", EXIT_USAGE)
    topic, records = records_of(args, ops, ids=args.offset)
    if args.offset:
        missing = sorted(set(args.offset) - {r.id for r in records})
        if missing:
            raise CliError(f"no dead letter {', '.join(missing)} in {topic}")
    try:
        outcomes = ops.dlq_replayer().run(
            topic, records, dry_run=args.dry_run, force=args.force, rate=args.rate,
            operator=args.operator or getpass.getuser(), note=args.note, progress=_progress(len(records)),
        )
    except LookupError as exc:  # no audit table
        raise CliError(str(exc)) from None
    counts = Counter(o.result for o in outcomes)
    healed = _heal(ops, topic, outcomes) if not args.dry_run else []
    if args.json:
        print_json({"dry_run": args.dry_run, "topic": topic, "counts": dict(counts),
                    "replays": [o.row() for o in outcomes], "resync_queued": healed})
    else:
        print_table([o.row() for o in outcomes], ["dlq", "target", "error", "replays", "result", "detail"])
        summary = ", ".join(f"{n} {result}" for result, n in sorted(counts.items())) or "nothing selected"
        print(f"{'dry run: ' if args.dry_run else ''}{summary}")
        if counts.get("published"):
            print("Replaying is safe: the worker recognizes changes it already applied and appends nothing for them.")
        if healed:
            print(f"{len(healed)} client(s) queued for a resync: a replayed change older than its client's last change "
                  "is not applied, so the resync role reads their current record from Salesforce "
                  "(`worker resync status`).")
    return EXIT_ERROR if counts.get("failed") else 0


def _heal(ops: Operations, topic: str, outcomes: list[Any]) -> list[str]:
    """The clients of CDC changes replayed: queued for a read from Salesforce, so a change too old to be applied
    (the client moved on meanwhile) still ends in the client's true state."""
    if topic != ops.settings.kafka.cdc_dlq_topic:
        return []
    keys = [o.record.key.decode("utf-8", "replace") for o in outcomes if o.result == "published" and o.record.key]
    ids = sorted({cid for cid in map(ops.client_id, keys) if cid})
    if ids:
        ops.resync_queue().request(ids, "its change was replayed from the dead-letter topic (`worker dlq replay`)")
    return ids


def _progress(total: int) -> Any:
    step = max(1, total // 20)

    def report(done: int) -> None:
        if total >= 200 and (done % step == 0 or done == total) and sys.stderr.isatty():
            print(f"\rreplaying {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

    return report
