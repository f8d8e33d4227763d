"""Consumer-group administration: members, committed offsets, watermarks, offsets for times, alter. Thin,
typed wrappers over confluent_kafka's AdminClient; per-partition errors are raised, never swallowed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from worker.config import KafkaSettings

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class GroupInfo:
    group: str
    state: str
    members: list[str]


class PartitionError(Exception):
    """Kafka reported an error for one partition."""


_ADMINS: dict[str, AdminClient] = {}


def _admin(kafka: KafkaSettings) -> AdminClient:
    """One client per cluster for the process: an AdminClient destroyed while a future waits never completes it."""
    key = repr(sorted(kafka.client_config().items()))
    if key not in _ADMINS:
        _ADMINS[key] = AdminClient(kafka.client_config())
    return _ADMINS[key]


def describe_group(kafka: KafkaSettings, group: str) -> GroupInfo:
    future = _admin(kafka).describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group]
    description = future.result()
    members = [f"{m.client_id}@{m.host} ({m.member_id[:24]})" for m in description.members]
    return GroupInfo(group, str(description.state).rsplit(".", 1)[-1].lower(), members)


def active_members(kafka: KafkaSettings, group: str) -> list[str]:
    return describe_group(kafka, group).members


def partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    metadata = _admin(kafka).list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaException(metadata.error if metadata else f"unknown topic {topic}")
    return sorted(metadata.partitions)


def committed(kafka: KafkaSettings, group: str, topic: str) -> dict[int, int | None]:
    """Committed offset per partition (None: nothing committed)."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions(kafka, topic)])
    result = _admin(kafka).list_consumer_group_offsets([request], request_timeout=TIMEOUT_S)[group].result()
    out: dict[int, int | None] = {}
    for tp in result.topic_partitions:
        if tp.error is not None:
            raise PartitionError(f"{topic}[{tp.partition}]: {tp.error}")
        out[tp.partition] = tp.offset if tp.offset >= 0 else None
    return out


def _list_offsets(kafka: KafkaSettings, topic: str, spec: Any, parts: list[int] | None = None) -> dict[int, int]:
    request = {TopicPartition(topic, p): spec for p in (parts if parts is not None else partitions(kafka, topic))}
    futures = _admin(kafka).list_offsets(request, request_timeout=TIMEOUT_S)
    out = {}
    for tp, future in futures.items():
        try:
            out[tp.partition] = future.result().offset
        except KafkaException as exc:
            raise PartitionError(f"{topic}[{tp.partition}]: {exc}") from exc
    return out


def earliest(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    return _list_offsets(kafka, topic, OffsetSpec.earliest())  # type: ignore[no-untyped-call]


def latest(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    return _list_offsets(kafka, topic, OffsetSpec.latest())  # type: ignore[no-untyped-call]


def offsets_for_time(kafka: KafkaSettings, topic: str, timestamp_ms: int) -> dict[int, int | None]:
    """The earliest offset whose timestamp is at or after ``timestamp_ms``; None where no message is."""
    found = _list_offsets(kafka, topic, OffsetSpec.for_timestamp(timestamp_ms))
    return {p: (o if o >= 0 else None) for p, o in found.items()}


def alter(kafka: KafkaSettings, group: str, topic: str, offsets: dict[int, int]) -> None:
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())])
    result = _admin(kafka).alter_consumer_group_offsets([request], request_timeout=TIMEOUT_S)[group].result()
    errors = [f"{topic}[{tp.partition}]: {tp.error}" for tp in result.topic_partitions if tp.error is not None]
    if errors:
        raise PartitionError("; ".join(errors))


def partition_lag(kafka: KafkaSettings, group: str, topic: str) -> list[dict[str, Any]]:
    """Per partition: committed offset, end offset and lag (from the start when nothing is committed)."""
    ends = latest(kafka, topic)
    starts = earliest(kafka, topic)
    done = committed(kafka, group, topic)
    rows = []
    for p in sorted(ends):
        position = done.get(p)
        lag = ends[p] - (position if position is not None else starts[p])
        rows.append({"topic": topic, "partition": p, "committed": position, "end": ends[p], "lag": lag})
    return rows
