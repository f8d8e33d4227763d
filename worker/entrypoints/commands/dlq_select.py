"""Which dead letters a `worker dlq` command selects: its filters, read from the DLQ topic."""

from __future__ import annotations

import argparse
from typing import Any

from worker.adapters.kafka.dlq_reader import DeadLetterFilter
from worker.adapters.kafka.reset_plan import parse_time
from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import EXIT_USAGE, CliError


def where_of(args: argparse.Namespace, ids: list[str] | None = None) -> DeadLetterFilter:
    def ms(text: str | None, flag: str) -> int | None:
        if not text:
            return None
        try:
            return int(parse_time(text).timestamp() * 1000)
        except ValueError as exc:
            raise CliError(f"{flag}: {exc}", EXIT_USAGE) from None

    for ident in ids or []:
        partition, _, offset = ident.partition("@")
        if not (partition.isdigit() and offset.isdigit()):
            raise CliError(f"not a dead-letter id: {ident!r} (use PARTITION@OFFSET as `dlq list` shows it)",
                           EXIT_USAGE)
    return DeadLetterFilter(
        since_ms=ms(getattr(args, "since", None), "--since"), until_ms=ms(getattr(args, "until", None), "--until"),
        error_class=getattr(args, "error_class", None), stage=getattr(args, "stage", None),
        key=getattr(args, "key", None), ids=frozenset(ids) if ids else None,
    )


def records_of(args: argparse.Namespace, ops: Operations, ids: list[str] | None = None) -> tuple[str, list[Any]]:
    """The DLQ topic (--topic, else the CDC topic's) and its dead letters that the filters select."""
    topic = args.topic or ops.settings.kafka.cdc_dlq_topic
    where = where_of(args, ids)
    try:
        return topic, list(ops.dlq_reader().read(topic, where))
    except LookupError as exc:
        raise CliError(f"{exc} (create the topics with `worker topics create`)") from None
