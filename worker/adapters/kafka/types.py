"""A Protocol for confluent_kafka.Message, so parsing and error paths are testable with a tiny stub."""

from __future__ import annotations

from typing import Any, Protocol


class KafkaMessage(Protocol):
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...
    def timestamp(self) -> tuple[int, int]: ...
    def error(self) -> Any: ...


def where(message: KafkaMessage) -> str:
    """`topic[partition]@offset`, the coordinates every log line about a message carries."""
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


def header_dict(message: KafkaMessage) -> dict[str, bytes]:
    """Headers as a dict (the last value wins for a repeated key); None values dropped."""
    raw = message.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: v if isinstance(v, bytes) else str(v).encode() for k, v in items if v is not None}
