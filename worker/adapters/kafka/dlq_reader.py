"""Reads a dead-letter topic without joining or committing any operational group: assign + seek, from the
earliest offset to the end captured at the start."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from worker.adapters.kafka import dlq
from worker.adapters.kafka.types import header_dict
from worker.config import KafkaSettings


@dataclass(frozen=True)
class DeadLetterRecord:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    def reason(self, name: str) -> str | None:
        return self.headers.get(name)

    def summary(self) -> dict[str, Any]:
        h = self.headers
        return {
            "dlq": f"{self.partition}@{self.offset}",
            "original": f"{h.get(dlq.H_TOPIC)}[{h.get(dlq.H_PARTITION)}]@{h.get(dlq.H_OFFSET)}",
            "key": self.key.decode("utf-8", "replace") if self.key else None,
            "stage": h.get(dlq.H_STAGE),
            "error": (h.get(dlq.H_CLASS) or "").rsplit(".", 1)[-1],
            "message": (h.get(dlq.H_MESSAGE) or "")[:80],
        }


def read_dead_letters(kafka: KafkaSettings, topic: str, timeout_s: float = 10.0) -> Iterator[DeadLetterRecord]:
    consumer = Consumer({**kafka.client_config(), "group.id": f"worker-dlq-reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.auto.offset.store": False})
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            raise LookupError(f"no topic {topic}")
        ends: dict[int, int] = {}
        starts = []
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))
        consumer.assign(starts)
        while ends:
            for m in consumer.consume(500, timeout_s):
                partition, offset = m.partition() or 0, m.offset() or 0
                if m.error() is not None or partition not in ends:
                    continue
                headers = {k: v.decode("utf-8", "replace") for k, v in header_dict(m).items()}
                yield DeadLetterRecord(partition, offset, m.timestamp()[1], m.key(), m.value(), headers)
                if offset + 1 >= ends[partition]:
                    del ends[partition]
    finally:
        consumer.close()
