"""Producer settings in one place: idempotent, acks=all, compressed; delivery reports are checked by callers."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Producer

from worker.config import KafkaSettings

MESSAGE_TIMEOUT_MS = 60_000  # librdkafka reports every record within this (delivered or failed)
MESSAGE_MAX_BYTES = 1_000_000  # produce() refuses a larger record (the broker's default limit is ~1 MiB too)
DELIVERY_MARGIN_S = 5.0


def delivery_timeout_s(config: dict[str, Any]) -> float:
    """How long a flush must wait for every delivery report: the producer's message timeout plus a margin (a
    shorter flush gives up on a record the producer may still deliver, and the retry sends a second copy)."""
    return int(config.get("message.timeout.ms", MESSAGE_TIMEOUT_MS)) / 1000 + DELIVERY_MARGIN_S


def producer_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    return {
        **kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
        "message.max.bytes": MESSAGE_MAX_BYTES,
        **extra,
    }


def make_producer(kafka: KafkaSettings, **extra: Any) -> Producer:
    return Producer(producer_config(kafka, **extra))


class TopicUnusable(Exception):
    """The topic we publish to does not exist, or we may not write to it: an operator must act (retrying would
    only stall the outbox)."""

    MISSING = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC})
    FORBIDDEN = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED})

    def __init__(self, topic: str, error: KafkaError) -> None:
        if error.code() in self.FORBIDDEN:
            what, fix = f"this principal may not write to {topic!r} ({error.str()})", "grant it WRITE on the topic"
        else:
            what, fix = f"the topic {topic!r} does not exist ({error.str()})", "create it with `worker topics create`"
        super().__init__(f"{what}: {fix}, then start the worker again")
        self.topic = topic

    @classmethod
    def applies(cls, error: KafkaError | None) -> bool:
        return error is not None and error.code() in cls.MISSING | cls.FORBIDDEN


class PublishFailed(Exception):
    """The broker did not acknowledge every record (transient: they are sent again)."""
