"""A thin, lazy batch consumer: manual commits only, cooperative-sticky, pause/resume; offsets are committed after
every batch, so a revoke finds nothing processed and uncommitted."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from worker.config import KafkaSettings

log = logging.getLogger("worker.kafka")


def consumer_config(kafka: KafkaSettings, group_id: str, **extra: Any) -> dict[str, Any]:
    """Every consumer setting in one place."""
    conf = {
        **kafka.client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": kafka.session_timeout_ms,
        "max.poll.interval.ms": kafka.max_poll_interval_ms,
        "enable.partition.eof": False,
        "isolation.level": "read_committed",
        # librdkafka prefetches up to 64 MiB per consumer by default; a batch needs far less
        "queued.max.messages.kbytes": kafka.fetch_queue_kbytes,
    }
    if kafka.group_instance_id:
        conf["group.instance.id"] = kafka.group_instance_id
    conf.update(extra)
    return conf


_REBALANCED = {KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID}
_DRAIN_S = 0.05  # a poll that brings nothing for this long means what had arrived is drained


class BatchConsumer:
    """Wraps confluent_kafka.Consumer; no network until `subscribe`."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
    ) -> None:
        self._config = config
        self._topics = list(topics)
        self._consumer: Consumer | None = None
        self.assignment: set[tuple[str, int]] = set()
        self.joined = False  # the group handed us an assignment (possibly empty) at least once

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._config)
            self._consumer.subscribe(self._topics, on_assign=self._assigned, on_revoke=self._revoked,
                                     on_lost=self._revoked)
        return self._consumer

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        """A batch of good messages, returned as soon as what has arrived is drained (librdkafka's consume()
        waits for a full batch or the timeout: up to `timeout_s` of latency at low rates); broker-level errors
        are raised (fatal) or logged (transient)."""
        client = self._client()
        deadline = time.monotonic() + timeout_s
        polled: list[Message] = []
        while len(polled) < max_messages:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            got = client.consume(max_messages - len(polled), min(left, _DRAIN_S))
            polled += got
            if polled and not got:
                break
        batch = []
        for message in polled:
            error = message.error()
            if error is None:
                batch.append(message)
            elif error.fatal() or error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART,):
                raise KafkaException(error)
            else:
                log.warning("consumer error: %s", error)
        return batch

    def commit(self, messages: Sequence[Message]) -> None:
        """Commit, synchronously, the offset after the last message of each partition in ``messages``."""
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            key = (message.topic() or "", message.partition() or 0)
            offsets[key] = max(offsets.get(key, -1), (message.offset() or 0) + 1)
        owned = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in self.assignment]
        if owned:
            try:
                self._client().commit(offsets=owned, asynchronous=False)
            except KafkaException as exc:
                code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None
                if code not in _REBALANCED:
                    raise
                # The group moved on between consume() and commit: these partitions now belong to the next
                # generation, whose owner redelivers from the last committed offset. The database transaction is
                # already committed and handling is idempotent, so nothing is lost and nothing is doubled.
                log.warning("commit refused by a rebalance (%s); the new owner redelivers %s", exc.args[0].name(),
                            _names(owned))
                return
        lost = len(offsets) - len(owned)
        if lost:
            # Revoked meanwhile: the new owner redelivers them, and handling is idempotent.
            log.info("skipped commit for %d revoked partition(s)", lost)

    def pause_all(self) -> None:
        parts = self._partitions()
        if parts:
            self._client().pause(parts)

    def resume_all(self) -> None:
        parts = self._partitions()
        if parts:
            self._client().resume(parts)

    def seek_to(self, messages: Sequence[Message]) -> None:
        """Rewind each partition to the first of ``messages`` so they are delivered again."""
        first: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic() or "", m.partition() or 0)
            first[key] = min(first.get(key, m.offset() or 0), m.offset() or 0)
        for (topic, partition), offset in first.items():
            if (topic, partition) in self.assignment:
                self._client().seek(TopicPartition(topic, partition, offset))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _partitions(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in sorted(self.assignment)]

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment |= {(tp.topic, tp.partition) for tp in partitions}
        self.joined = True
        log.info("assigned %s", _names(partitions))

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Offsets are committed synchronously after every batch, before the next consume(), so nothing
        # processed is uncommitted when a revoke arrives (it is only delivered inside consume()).
        self.assignment -= {(tp.topic, tp.partition) for tp in partitions}
        log.info("revoked %s", _names(partitions))


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "-"
