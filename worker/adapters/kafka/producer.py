"""Producer settings in one place: idempotent, acks=all, compressed; delivery reports are checked by callers."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from worker.config import KafkaSettings


def producer_config(kafka: KafkaSettings, **extra: Any) -> dict[str, Any]:
    return {
        **kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "message.timeout.ms": 60_000,
        **extra,
    }


def make_producer(kafka: KafkaSettings, **extra: Any) -> Producer:
    return Producer(producer_config(kafka, **extra))


class PublishFailed(Exception):
    """The broker did not acknowledge every record (transient: they are sent again)."""
