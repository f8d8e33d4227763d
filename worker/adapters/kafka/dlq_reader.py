"""Reads a dead-letter topic without joining or committing any operational group: assign + seek, from the
earliest offset (or the first at `since`) to the end captured at the start."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from worker.adapters.kafka import dlq
from worker.config import KafkaSettings


@dataclass(frozen=True)
class DeadLetterRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    raw_headers: tuple[tuple[str, bytes], ...]

    @property
    def id(self) -> str:
        """`partition@offset` in the DLQ topic: how every command names a dead letter."""
        return f"{self.partition}@{self.offset}"

    @property
    def headers(self) -> dict[str, str]:
        return {k: v.decode("utf-8", "replace") for k, v in self.raw_headers}

    @property
    def error_class(self) -> str:
        return self.headers.get(dlq.H_CLASS) or ""

    @property
    def stage(self) -> str | None:
        return self.headers.get(dlq.H_STAGE)

    @property
    def original_topic(self) -> str | None:
        return self.headers.get(dlq.H_TOPIC)

    @property
    def original_partition(self) -> int | None:
        return _int(self.headers.get(dlq.H_PARTITION))

    @property
    def original_offset(self) -> int | None:
        return _int(self.headers.get(dlq.H_OFFSET))

    @property
    def replay_count(self) -> int:
        return _int(self.headers.get(dlq.H_REPLAY_COUNT)) or 0

    @property
    def time(self) -> str:
        return iso(self.timestamp_ms)

    def original(self) -> str:
        return f"{self.original_topic}[{self.original_partition}]@{self.original_offset}"

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the failed message had (ours dropped, replay bookkeeping kept for the caller to bump)."""
        return [(k, v) for k, v in self.raw_headers if not k.startswith(dlq.PREFIX)]

    def summary(self) -> dict[str, Any]:
        h = self.headers
        return {
            "dlq": self.id,
            "time": self.time,
            "original": self.original(),
            "key": self.key.decode("utf-8", "replace") if self.key else None,
            "stage": self.stage,
            "error": self.error_class.rsplit(".", 1)[-1],
            "message": (h.get(dlq.H_MESSAGE) or "")[:80],
            "replays": self.replay_count,
        }

    def export(self) -> dict[str, Any]:
        """Everything about the record as JSON-safe data (bytes in base64, and as text when they are UTF-8)."""
        return {
            "dlq_topic": self.topic,
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "time": self.time,
            "original_topic": self.original_topic,
            "original_partition": self.original_partition,
            "original_offset": self.original_offset,
            "stage": self.stage,
            "error_class": self.error_class,
            "error_message": self.headers.get(dlq.H_MESSAGE),
            "replay_count": self.replay_count,
            "key": self.key.decode("utf-8", "replace") if self.key is not None else None,
            "value_base64": base64.b64encode(self.value).decode() if self.value is not None else None,
            "value_text": _text(self.value),
            "headers": self.headers,
        }


@dataclass(frozen=True)
class DeadLetterFilter:
    """What `list`, `stats`, `export` and `replay` select; every criterion given must hold."""

    since_ms: int | None = None
    until_ms: int | None = None
    error_class: str | None = None
    stage: str | None = None
    key: str | None = None
    ids: frozenset[str] | None = None

    def matches(self, record: DeadLetterRecord) -> bool:
        if self.ids is not None and record.id not in self.ids:
            return False
        if self.since_ms is not None and record.timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and record.timestamp_ms >= self.until_ms:
            return False
        if self.stage is not None and record.stage != self.stage:
            return False
        if self.key is not None and (record.key or b"").decode("utf-8", "replace") != self.key:
            return False
        # the short name (UnknownSchema) or the qualified one (worker....errors.UnknownSchema) both select
        return self.error_class is None or self.error_class in (record.error_class,
                                                                record.error_class.rsplit(".", 1)[-1])


def read_dead_letters(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0,
                      where: DeadLetterFilter | None = None) -> Iterator[DeadLetterRecord]:
    where = where or DeadLetterFilter()
    consumer = Consumer({**kafka.client_config(), "group.id": f"worker-dlq-reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.auto.offset.store": False})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise LookupError(f"no topic {topic}")
        wanted = _partitions_of(where.ids)
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in sorted(meta.partitions):
            if wanted is not None and p not in wanted:
                continue
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        if where.since_ms is not None and starts:
            starts = _seek_to_time(consumer, starts, where.since_ms, ends, timeout_s)
        consumer.assign(starts)
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: no record for {timeout_s}s before the end captured at the start")
            for m in consumer.consume(500, 0.2):  # returns with 500 records or after 0.2 s, whichever is first
                deadline = time.monotonic() + timeout_s
                partition, offset = m.partition() or 0, m.offset() or 0
                if m.error() is not None or partition not in ends:
                    continue
                raw = tuple(_pairs(m))
                record = DeadLetterRecord(topic, partition, offset, m.timestamp()[1], m.key(), m.value(), raw)
                if where.matches(record):
                    yield record
                if offset + 1 >= ends[partition]:
                    del ends[partition]
    finally:
        consumer.close()


def find(kafka: KafkaSettings, topic: str, ident: str) -> DeadLetterRecord:
    """One dead letter by `partition@offset` (or a bare offset, when only one partition holds it)."""
    if "@" in ident:
        found = list(read_dead_letters(kafka, topic, where=DeadLetterFilter(ids=frozenset({ident}))))
    else:
        if not ident.isdigit():
            raise LookupError(f"not a dead-letter id: {ident!r} (use PARTITION@OFFSET as `dlq list` shows it)")
        found = [r for r in read_dead_letters(kafka, topic) if r.offset == int(ident)]
        if len(found) > 1:
            ids = ", ".join(r.id for r in found)
            raise LookupError(f"offset {ident} exists in several partitions of {topic} ({ids}): give PARTITION@OFFSET")
    if not found:
        raise LookupError(f"no dead letter {ident} in {topic}")
    return found[0]


def iso(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seek_to_time(consumer: Consumer, starts: list[TopicPartition], since_ms: int, ends: dict[int, int],
                  timeout_s: float) -> list[TopicPartition]:
    """Start each partition at its first record at or after `since` (Kafka's time index), skipping the rest."""
    found = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, since_ms) for tp in starts],
                                       timeout=timeout_s)
    kept = []
    for tp in found:
        if tp.offset < 0 or tp.offset >= ends[tp.partition]:  # nothing at or after the time
            del ends[tp.partition]
        else:
            kept.append(TopicPartition(tp.topic, tp.partition, tp.offset))
    return kept


def _pairs(message: Any) -> list[tuple[str, bytes]]:
    items: list[tuple[str, Any]] = list(message.headers() or [])
    return [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in items if v is not None]


def _partitions_of(ids: frozenset[str] | None) -> set[int] | None:
    if ids is None:
        return None
    return {int(i.partition("@")[0]) for i in ids}


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


class DeadLetterReader:
    """The dead-letter topics of the configured cluster, read with assign + seek (never a group's offsets)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka

    def read(self, topic: str, where: DeadLetterFilter | None = None) -> Iterator[DeadLetterRecord]:
        return read_dead_letters(self._kafka, topic, where=where)

    def find(self, topic: str, ident: str) -> DeadLetterRecord:
        return find(self._kafka, topic, ident)
