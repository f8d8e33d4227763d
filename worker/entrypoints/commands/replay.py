"""`worker replay ingest --to-datetime ISO [--execute]`: the common replay in one command."""

from __future__ import annotations

import argparse

from worker.bootstrap_operations import Operations
from worker.entrypoints.commands.offsets import _print_plan, add_reset_arguments, reset_group


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("replay", help="replay input from a point in time (the ingest group)")
    sub = parser.add_subparsers(dest="replay_command", required=True, metavar="ROLE")
    ingest = sub.add_parser("ingest", help="move the ingest group back to a time; stop the ingest workers first")
    add_reset_arguments(ingest, only_datetime=True)
    ingest.set_defaults(func=_replay_ingest)


def _replay_ingest(args: argparse.Namespace, ops: Operations) -> int:
    kafka = ops.settings.kafka
    rows = reset_group(args, ops, kafka.ingest_group, kafka.cdc_topic)
    _print_plan(args, rows)
    if not args.json:
        print(
            "Replaying is safe: every change carries its Salesforce identity and commit position, so changes the "
            "event store already holds append nothing; only what was missed or dead-lettered is applied."
        )
    return 0
