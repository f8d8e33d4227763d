"""Dead-letter records: the original key, value and headers, plus the reason, under ONE header prefix.

The names follow Kafka Connect's `__connect.errors.*` so an operator recognizes them. A dead letter always fits
the topic: the stack trace and message are cut first, and an original value too large to carry is replaced by a
reference (its coordinates, size and SHA-256, with a header saying it was omitted).
"""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from worker import __version__
from worker.adapters.kafka.producer import DELIVERY_MARGIN_S, MESSAGE_MAX_BYTES, MESSAGE_TIMEOUT_MS
from worker.adapters.kafka.types import KafkaMessage, header_dict

log = logging.getLogger("worker.dlq")

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
# Set only when the original did not fit: what was left out ("value", "value,headers"), and what identifies it.
H_ORIGINAL_OMITTED = PREFIX + "original.omitted"
H_ORIGINAL_SIZE = PREFIX + "original.size"
H_ORIGINAL_SHA256 = PREFIX + "original.sha256"
H_RESYNC = PREFIX + "resync"  # the clients marked for resync because of this dead letter, or why none

STACKTRACE_CAP = 8 * 1024
MESSAGE_CAP = 2000
# (message, stack trace) caps tried in turn before the original value is replaced by a reference
_CUTS = ((MESSAGE_CAP, STACKTRACE_CAP), (500, 1024), (200, 0))
_RECORD_OVERHEAD = 1024  # record batch and varint overhead, kept free below message.max.bytes
_HEADER_OVERHEAD = 8

_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
_MISSING = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
_FORBIDDEN = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}


class Stage(StrEnum):
    PARSE = "parse"
    TRANSLATE = "translate"
    VALIDATE = "validate"
    HANDLE = "handle"
    PROJECT = "project"


@dataclass(frozen=True)
class DeadLetter:
    """A record that cannot be processed, why, and the stack trace taken when it failed."""

    message: KafkaMessage
    stage: Stage
    error: BaseException
    stacktrace: str = field(default="", compare=False, repr=False)
    resync: str | None = None

    def __post_init__(self) -> None:
        if not self.stacktrace:
            object.__setattr__(self, "stacktrace", "".join(traceback.format_exception(self.error)))
        _drop_tracebacks(self.error)  # kept as text: a traceback holds the failed batch's frames alive

    @property
    def error_class(self) -> str:
        return f"{type(self.error).__module__}.{type(self.error).__qualname__}"

    def original_reference(self) -> dict[str, object]:
        """What identifies the original value when its bytes are left out."""
        value = self.message.value() or b""
        return {H_ORIGINAL_SIZE: len(value), H_ORIGINAL_SHA256: hashlib.sha256(value).hexdigest()}


def _drop_tracebacks(error: BaseException | None) -> None:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__


@dataclass(frozen=True)
class DeadLetterRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]]

    @property
    def size(self) -> int:
        """Bytes the producer counts against message.max.bytes (key, value, headers), plus their framing."""
        headers = sum(len(k.encode()) + len(v or b"") + _HEADER_OVERHEAD for k, v in self.headers)
        return len(self.key or b"") + len(self.value or b"") + headers

    @property
    def omitted(self) -> str:
        """What of the original was left out ("" when nothing was)."""
        found = next((v for k, v in self.headers if k == H_ORIGINAL_OMITTED), b"")
        return found.decode() if isinstance(found, bytes) else str(found or "")


def render(letter: DeadLetter, topic: str, group_id: str, max_bytes: int = MESSAGE_MAX_BYTES,
           now_ms: int | None = None, *, reference: bool = False) -> DeadLetterRecord:
    """The dead-letter record of ``letter``, cut to fit ``max_bytes``: first the message and stack trace, then
    the original value (replaced by a reference), last the original headers. ``reference`` forces the value
    out (the broker refused the record as too large for the topic)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    budget = max_bytes - _RECORD_OVERHEAD
    if not reference:
        for message_cap, trace_cap in _CUTS:
            record = _record(letter, topic, group_id, now_ms, message_cap, trace_cap, omit=())
            if record.size <= budget:
                return record
    record = _record(letter, topic, group_id, now_ms, _CUTS[-1][0], 0, omit=("value",))
    if record.size <= budget:
        return record
    return _record(letter, topic, group_id, now_ms, _CUTS[-1][0], 0, omit=("value", "headers"))


def _record(letter: DeadLetter, topic: str, group_id: str, now_ms: int, message_cap: int, trace_cap: int,
            omit: tuple[str, ...]) -> DeadLetterRecord:
    msg = letter.message
    original: list[tuple[str, str | bytes | None]] = [] if "headers" in omit else [
        (k, v) for k, v in header_dict(msg).items() if not k.startswith(PREFIX) or k in _KEPT
    ]
    reason: dict[str, object] = {
        H_TOPIC: msg.topic(),
        H_PARTITION: msg.partition(),
        H_OFFSET: msg.offset(),
        H_TIMESTAMP: msg.timestamp()[1],
        H_GROUP: group_id,
        H_STAGE: letter.stage.value,
        H_CLASS: letter.error_class,
        H_MESSAGE: _cut(str(letter.error), message_cap),
        H_STACKTRACE: _cut(letter.stacktrace, trace_cap) if trace_cap else None,
        H_ATTEMPTS: 1,  # poison is dead-lettered at its first failure
        H_FIRST_FAILURE: now_ms,
        H_LAST_FAILURE: now_ms,
        H_WORKER_VERSION: __version__,
        H_RESYNC: letter.resync,
    }
    if omit:
        reason[H_ORIGINAL_OMITTED] = ",".join(omit)
        reason.update(letter.original_reference())
    return DeadLetterRecord(topic, msg.key(), None if "value" in omit else msg.value(),
                            original + _text_headers(reason))


@dataclass(frozen=True)
class DeadLetterLimits:
    """What the producer allows: the largest record, and how long until every delivery report has come."""

    max_bytes: int = MESSAGE_MAX_BYTES
    delivery_timeout_s: float = MESSAGE_TIMEOUT_MS / 1000 + DELIVERY_MARGIN_S


class DeadLetterPublisher:
    """Publishes dead letters to `<source topic><suffix>`; `flush()` confirms them before offsets move."""

    def __init__(self, producer: Producer, group_id: str, suffix: str = ".dlq",
                 limits: DeadLetterLimits | None = None) -> None:
        self._producer = producer
        self._group_id = group_id
        self._suffix = suffix
        self._limits = limits or DeadLetterLimits()
        self._failures: list[str] = []
        self._too_large: list[DeadLetter] = []
        self._unusable: list[DeadLetterTopicUnusable] = []

    def publish(self, letter: DeadLetter, *, reference: bool = False) -> None:
        topic = f"{letter.message.topic()}{self._suffix}"
        record = render(letter, topic, self._group_id, self._limits.max_bytes, reference=reference)
        if record.omitted:
            log.warning("dead letter of %s[%s]@%s is too large for %s: the original %s left out (its size and "
                        "SHA-256 are kept)", letter.message.topic(), letter.message.partition(),
                        letter.message.offset(), topic, record.omitted.replace(",", " and "))
        try:
            self._producer.produce(record.topic, key=record.key, value=record.value, headers=record.headers,
                                   on_delivery=self._report(letter, record))
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.code() in _TOO_LARGE and not record.omitted:
                self.publish(letter, reference=True)  # our estimate was short of the producer's count
                return
            if error is not None and error.code() in _MISSING | _FORBIDDEN:
                raise DeadLetterTopicUnusable(record.topic, error) from None
            raise

    def flush(self) -> None:
        """Wait until every dead letter is acknowledged or reported failed (as long as the producer may still
        deliver one); raise if one was not (the offset must not move)."""
        deadline = time.monotonic() + self._limits.delivery_timeout_s
        while True:
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
            if not self._too_large or remaining:
                break
            # the broker's limit for the topic is below ours: send a reference instead of the original value
            letters, self._too_large = self._too_large, []
            for letter in letters:
                self.publish(letter, reference=True)
        failures, self._failures = self._failures, []
        unusable, self._unusable = self._unusable, []
        if unusable:
            raise unusable[0]
        if remaining or failures:
            raise DeadLetterNotDelivered(f"{remaining} undelivered, failures: {failures[:3]}")

    def _report(self, letter: DeadLetter, record: DeadLetterRecord) -> Callable[[KafkaError | None, Any], None]:
        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                return
            if err.code() in _TOO_LARGE and not record.omitted:
                self._too_large.append(letter)
            elif err.code() in _MISSING | _FORBIDDEN:
                self._unusable.append(DeadLetterTopicUnusable(record.topic, err))
            else:
                self._failures.append(str(err))

        return on_delivery


class DeadLetterNotDelivered(Exception):
    """The DLQ did not acknowledge a record (transient: retry before committing the offset)."""


class DeadLetterTopicUnusable(Exception):
    """The dead-letter topic does not exist or we may not write to it: an operator must act; retrying would
    only stall the partitions."""

    def __init__(self, topic: str, error: KafkaError) -> None:
        if error.code() in _FORBIDDEN:
            what = f"this principal may not write to the dead-letter topic {topic!r} ({error.str()})"
            fix = "grant it WRITE on the topic"
        else:
            what = f"the dead-letter topic {topic!r} does not exist ({error.str()})"
            fix = "create it with `worker topics create`"
        super().__init__(f"{what}: {fix}, then start the worker again")
        self.topic = topic
        self.code = error.code()


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
    # an error's message can quote a text with no UTF-8 form (an unpaired surrogate): written as its escape
    return [(k, str(v).encode("utf-8", "backslashreplace")) for k, v in values.items() if v is not None]


def _cut(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[: max(0, cap - 20)] + "\n... (truncated)"
