"""Fakes of confluent-kafka clients that fail on cue, for unit tests of the paths real brokers rarely take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException


@dataclass
class Produced:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, Any]]
    on_delivery: Callable[[KafkaError | None, Any], None] | None

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"") + sum(len(k) + len(v or b"") for k, v in self.headers)

    def header(self, name: str) -> str | None:
        return next((v.decode() for k, v in self.headers if k == name), None)


class FakeProducer:
    """Refuses records over ``max_bytes`` in produce() as librdkafka does; ``outcome(record)`` decides each
    delivery report (None: delivered); ``ack_after_s``: a flush shorter than that leaves the records unreported."""

    def __init__(self, max_bytes: int = 1_000_000, outcome: Callable[[Produced], int | None] | None = None,
                 refuse: Callable[[Produced], int | None] | None = None, ack_after_s: float = 0.0) -> None:
        self.max_bytes = max_bytes
        self.outcome = outcome or (lambda _r: None)
        self.refuse = refuse or (lambda _r: None)
        self.ack_after_s = ack_after_s
        self.produced: list[Produced] = []
        self.delivered: list[Produced] = []
        self.flushes: list[float] = []
        self._pending: list[Produced] = []

    def produce(self, topic: str, key: bytes | None = None, value: bytes | None = None,
                headers: list[tuple[str, Any]] | None = None, on_delivery: Any = None) -> None:
        record = Produced(topic, key, value, list(headers or []), on_delivery)
        code = self.refuse(record)
        if code is None and record.size > self.max_bytes:
            code = KafkaError.MSG_SIZE_TOO_LARGE
        if code is not None:
            raise KafkaException(KafkaError(code))
        self.produced.append(record)
        self._pending.append(record)

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        self.flushes.append(timeout)
        if timeout < self.ack_after_s:
            return len(self._pending)
        pending, self._pending = self._pending, []
        for record in pending:
            code = self.outcome(record)
            if code is None:
                self.delivered.append(record)
            if record.on_delivery:
                record.on_delivery(KafkaError(code) if code is not None else None, record)
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._pending)


@dataclass
class OffsetMessage:
    """A consumed message at a given partition and offset."""

    partition_: int = 0
    offset_: int = 0
    topic_: str = "t"
    value_: bytes | None = b"{}"
    key_: bytes | None = None
    headers_: list[tuple[str, bytes]] = field(default_factory=list)

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def headers(self) -> list[tuple[str, bytes]]:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def error(self) -> None:
        return None
