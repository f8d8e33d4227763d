"""Re-publishes dead letters to the topic and partition they came from, with a replay count and time.

The original partition is kept explicitly: librdkafka's default partitioner (CRC32) differs from the Java
client's (murmur2), so producing by key alone could land a change on another partition than its record's
other changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from worker.adapters.kafka import dlq
from worker.adapters.kafka.dlq import H_ORIGINAL_OMITTED
from worker.adapters.kafka.dlq_reader import DeadLetterRecord
from worker.adapters.postgres.dlq_audit import ReplayAudit, ReplayRecord


@dataclass(frozen=True)
class ReplayOutcome:
    record: DeadLetterRecord
    result: str  # published | refused | failed | skipped | would-publish
    detail: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "dlq": self.record.id,
            "target": f"{self.record.original_topic}[{self.record.original_partition}]",
            "error": self.record.error_class.rsplit(".", 1)[-1],
            "replays": self.record.replay_count,
            "result": self.result,
            "detail": self.detail,
        }


class Pacer:
    """At most `rate` sends per second (None: unbounded)."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = clock()

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if self._next > now:
            self._sleep(self._next - now)
        self._next = max(self._next, now) + self._interval


def replay_headers(record: DeadLetterRecord, now: datetime) -> list[tuple[str, bytes]]:
    return [
        *record.original_headers(),
        (dlq.H_REPLAY_COUNT, str(record.replay_count + 1).encode()),
        (dlq.H_REPLAYED_AT, now.isoformat(timespec="milliseconds").encode()),
    ]


def replay(
    records: Iterable[DeadLetterRecord],
    producer: Producer,
    *,
    max_replays: int,
    dry_run: bool,
    already: set[str] | None = None,
    pacer: Pacer | None = None,
    progress: Callable[[int], None] | None = None,
    flush_timeout_s: float = 60.0,
) -> list[ReplayOutcome]:
    """Publish each record back where it came from, unless its replay count reached ``max_replays`` (refused)
    or it was already replayed (skipped; pass ``already=None`` to replay again). Delivery is confirmed."""
    outcomes: list[ReplayOutcome] = []
    pending: dict[int, DeadLetterRecord] = {}
    acknowledged: set[int] = set()
    failures: dict[int, str] = {}
    for n, record in enumerate(records, 1):
        verdict = _verdict(record, max_replays, already)
        if verdict is not None:
            outcomes.append(verdict)
            continue
        if dry_run:
            outcomes.append(ReplayOutcome(record, "would-publish"))
            continue
        if pacer is not None:
            pacer.wait()
        index = len(outcomes)
        outcomes.append(ReplayOutcome(record, "published"))
        pending[index] = record

        def delivered(err: Any, _msg: Any, index: int = index) -> None:
            if err is None:
                acknowledged.add(index)
            else:
                failures[index] = str(err)

        headers: list[tuple[str, str | bytes | None]] = list(replay_headers(record, datetime.now(UTC)))
        producer.produce(record.original_topic or "", key=record.key, value=record.value,
                         partition=record.original_partition or 0, headers=headers, on_delivery=delivered)
        producer.poll(0)
        if progress is not None:
            progress(n)
    if pending:
        producer.flush(flush_timeout_s)
        for index in pending:  # each record its own outcome: one late acknowledgement fails only that record
            if index not in acknowledged:
                failures.setdefault(index, f"not acknowledged within {flush_timeout_s:g}s (a rerun is safe)")
    for index, reason in failures.items():
        outcomes[index] = ReplayOutcome(outcomes[index].record, "failed", reason)
    return outcomes


def _verdict(record: DeadLetterRecord, max_replays: int, already: set[str] | None) -> ReplayOutcome | None:
    if record.original_topic is None or record.original_partition is None:
        return ReplayOutcome(record, "refused", "no original topic/partition headers: not a worker dead letter")
    if record.headers.get(H_ORIGINAL_OMITTED):
        return ReplayOutcome(record, "refused",
                             f"the original {record.headers[H_ORIGINAL_OMITTED]} was too large to keep in the dead "
                             "letter (size and sha256 in its headers): replay it from the original topic at its "
                             "offset (`worker offsets reset` / `worker replay ingest`) or by hand")
    if record.replay_count >= max_replays:
        return ReplayOutcome(record, "refused",
                             f"replayed {record.replay_count} times already (limit WORKER_DLQ_MAX_REPLAYS="
                             f"{max_replays}): fix the cause, then raise the limit or handle it by hand")
    if already is not None and record.id in already:
        return ReplayOutcome(record, "skipped", "already replayed (see `worker dlq audit`); --force replays again")
    return None


def audit_entries(outcomes: Iterable[ReplayOutcome], operator: str, note: str | None) -> list[ReplayRecord]:
    """What the audit table keeps: every attempt that published, failed or was refused."""
    return [
        ReplayRecord(
            operator=operator, note=note, dlq_topic=o.record.topic, dlq_partition=o.record.partition,
            dlq_offset=o.record.offset, target_topic=o.record.original_topic,
            target_partition=o.record.original_partition, original_offset=o.record.original_offset,
            error_class=o.record.error_class, replay_count=o.record.replay_count, result=o.result, detail=o.detail,
        )
        for o in outcomes
        if o.result in ("published", "refused", "failed")
    ]


class DeadLetterReplayer:
    """`worker dlq replay`: the audit read, the replay and the audit write in ONE locked transaction per DLQ
    topic (see ReplayAudit.locked), so two replays at once never both publish the same dead letter."""

    def __init__(self, producer: Producer, audit: ReplayAudit, max_replays: int, flush_timeout_s: float = 60.0):
        self._producer = producer
        self._audit = audit
        self._max_replays = max_replays
        self._flush_timeout_s = flush_timeout_s

    def run(self, topic: str, records: list[DeadLetterRecord], *, dry_run: bool, force: bool, rate: float | None,
            operator: str, note: str | None, progress: Callable[[int], None] | None = None) -> list[ReplayOutcome]:
        with self._audit.locked(topic) as trail:
            already = None if force else trail.already_published()
            outcomes = replay(records, self._producer, max_replays=self._max_replays, dry_run=dry_run,
                              already=already, pacer=Pacer(rate), progress=progress,
                              flush_timeout_s=self._flush_timeout_s)
            if not dry_run:
                trail.record(audit_entries(outcomes, operator, note))
        return outcomes
