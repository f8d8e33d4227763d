"""Dead-letter records: the original key, value and headers, plus the reason, under ONE header prefix.

The names follow Kafka Connect's `__connect.errors.*` so an operator recognizes them.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from enum import StrEnum

from confluent_kafka import Producer

from worker import __version__
from worker.adapters.kafka.types import KafkaMessage, header_dict

PREFIX = "__worker.errors."
H_TOPIC = PREFIX + "topic"
H_PARTITION = PREFIX + "partition"
H_OFFSET = PREFIX + "offset"
H_TIMESTAMP = PREFIX + "timestamp"
H_GROUP = PREFIX + "group.id"
H_STAGE = PREFIX + "stage"
H_CLASS = PREFIX + "exception.class.name"
H_MESSAGE = PREFIX + "exception.message"
H_STACKTRACE = PREFIX + "exception.stacktrace"
H_ATTEMPTS = PREFIX + "attempts"
H_FIRST_FAILURE = PREFIX + "first.failure"
H_LAST_FAILURE = PREFIX + "last.failure"
H_WORKER_VERSION = PREFIX + "worker.version"
H_REPLAY_COUNT = PREFIX + "replay.count"
H_REPLAYED_AT = PREFIX + "replayed.at"

STACKTRACE_CAP = 8 * 1024


class Stage(StrEnum):
    PARSE = "parse"
    TRANSLATE = "translate"
    VALIDATE = "validate"
    HANDLE = "handle"
    PROJECT = "project"


@dataclass(frozen=True)
class DeadLetter:
    message: KafkaMessage
    stage: Stage
    error: BaseException


class DeadLetterPublisher:
    """Publishes dead letters to `<source topic><suffix>`; `flush()` confirms them before offsets move."""

    def __init__(self, producer: Producer, group_id: str, suffix: str = ".dlq") -> None:
        self._producer = producer
        self._group_id = group_id
        self._suffix = suffix
        self._failures: list[str] = []

    def publish(self, letter: DeadLetter) -> None:
        msg = letter.message
        now_ms = int(time.time() * 1000)
        original: list[tuple[str, str | bytes | None]] = [
            (k, v) for k, v in header_dict(msg).items() if not k.startswith(PREFIX) or k in _KEPT
        ]
        headers = original + _text_headers(
            {
                H_TOPIC: msg.topic(),
                H_PARTITION: msg.partition(),
                H_OFFSET: msg.offset(),
                H_TIMESTAMP: msg.timestamp()[1],
                H_GROUP: self._group_id,
                H_STAGE: letter.stage.value,
                H_CLASS: f"{type(letter.error).__module__}.{type(letter.error).__qualname__}",
                H_MESSAGE: str(letter.error)[:2000],
                H_STACKTRACE: _stacktrace(letter.error),
                # Poison is dead-lettered at its first failure (transient faults are retried, never
                # dead-lettered): one attempt, first failure = last failure. Kept for Connect-style tooling.
                H_ATTEMPTS: 1,
                H_FIRST_FAILURE: now_ms,
                H_LAST_FAILURE: now_ms,
                H_WORKER_VERSION: __version__,
            }
        )
        self._producer.produce(
            f"{msg.topic()}{self._suffix}",
            key=msg.key(),
            value=msg.value(),
            headers=headers,
            on_delivery=self._on_delivery,
        )

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every dead letter to be acknowledged; raise if one was not (the offset must not move)."""
        remaining = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if remaining or failures:
            raise DeadLetterNotDelivered(f"{remaining} undelivered, failures: {failures[:3]}")

    def _on_delivery(self, err: object, _msg: object) -> None:
        if err is not None:
            self._failures.append(str(err))


class DeadLetterNotDelivered(Exception):
    """The DLQ did not acknowledge a record (transient: retry before committing the offset)."""


_KEPT = {H_REPLAY_COUNT, H_REPLAYED_AT}


def replay_count(msg: KafkaMessage) -> int:
    """How often this record was already replayed from a DLQ."""
    for key, value in msg.headers() or []:
        if key == H_REPLAY_COUNT and value:
            try:
                return int(value.decode())
            except ValueError:
                return 0
    return 0


def _text_headers(values: dict[str, object]) -> list[tuple[str, str | bytes | None]]:
    return [(k, str(v).encode("utf-8")) for k, v in values.items() if v is not None]


def _stacktrace(error: BaseException) -> str:
    text = "".join(traceback.format_exception(error))
    return text if len(text) <= STACKTRACE_CAP else text[: STACKTRACE_CAP - 20] + "\n... (truncated)"
