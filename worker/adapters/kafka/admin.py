"""Topic administration: create the worker's topics idempotently, report mismatches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from worker.config import KafkaSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicOutcome:
    name: str
    status: str  # created | exists | mismatch | error
    detail: str = ""


def worker_topics(kafka: KafkaSettings) -> list[TopicSpec]:
    def spec(name: str, retention_ms: int) -> TopicSpec:
        return TopicSpec(name, kafka.partitions, kafka.replication_factor, {"retention.ms": str(retention_ms)})

    return [
        spec(kafka.cdc_topic, kafka.retention_ms),
        spec(kafka.events_topic, kafka.retention_ms),
        spec(kafka.cdc_dlq_topic, kafka.dlq_retention_ms),
        spec(kafka.events_dlq_topic, kafka.dlq_retention_ms),
    ]


def admin_client(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(kafka.client_config())


def create_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> list[TopicOutcome]:
    """Create what is missing; an existing topic with fewer partitions than configured is a mismatch."""
    existing = admin.list_topics(timeout=timeout_s).topics
    outcomes: dict[str, TopicOutcome] = {}
    to_create = []
    for spec in specs:
        meta = existing.get(spec.name)
        if meta is None or meta.error is not None:
            to_create.append(spec)
            continue
        have = len(meta.partitions)
        if have < spec.partitions:
            outcomes[spec.name] = TopicOutcome(
                spec.name, "mismatch", f"has {have} partitions, configured {spec.partitions}"
            )
        else:
            outcomes[spec.name] = TopicOutcome(spec.name, "exists", f"{have} partitions")
    if to_create:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in to_create],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for spec in to_create:
            outcomes[spec.name] = _outcome(spec, futures[spec.name])
    return [outcomes[s.name] for s in specs]


def _outcome(spec: TopicSpec, future: Any) -> TopicOutcome:
    try:
        future.result()
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return TopicOutcome(spec.name, "exists", "created concurrently")
        return TopicOutcome(spec.name, "error", error.str())
    return TopicOutcome(spec.name, "created", f"{spec.partitions} partitions, rf {spec.replication_factor}")
