"""A thin, lazy batch consumer: manual commits only, cooperative-sticky, pause/resume. Offsets are committed after
every batch without waiting for the coordinator's answer (it comes back through librdkafka's commit callback while
the next batch is consumed); a revoke or close commits what is still unanswered, synchronously, so a partition
changes hands with nothing processed and uncommitted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
        # librdkafka prefetches up to 64 MiB per consumer by default (resident memory); a batch needs far less
        "queued.max.messages.kbytes": kafka.fetch_queue_kbytes,
        # once that queue is full, librdkafka waits this long before fetching again (1 s by default: a small queue
        # would then run dry between fetches)
        "fetch.queue.backoff.ms": 50,
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        "fetch.min.bytes": kafka.fetch_min_bytes,
    }
    if kafka.group_instance_id:
        conf["group.instance.id"] = kafka.group_instance_id
    conf.update(extra)
    return conf


# The group moved on between consume() and commit(): the commit is refused, but under cooperative-sticky this
# member usually keeps the partition (its position already past the batch), so the offset is remembered and
# committed again once the rebalance is over.
_REBALANCED = {KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID,
               KafkaError._IN_PROGRESS, KafkaError._ASSIGNMENT_LOST, KafkaError.STALE_MEMBER_EPOCH}
# librdkafka reports none of these as retriable() from a synchronous commit, yet each is the coordinator moving,
# loading or out of reach: retry with backoff (the Java client retries them too).
TRANSIENT_COMMIT_ERRORS = {
    KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION,
    KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._WAIT_COORD, KafkaError._ALL_BROKERS_DOWN, KafkaError._RETRY, KafkaError.UNSTABLE_OFFSET_COMMIT,
}
# A consumer that was idle, once its first message has arrived, waits at most this much longer for more (a backlog
# fills a batch at once anyway), so a message waits for its batch ~linger_s, not timeout_s.
_LINGER_S = 0.02
_RECOMMIT_EVERY_S = 0.5


def commit_error(error: KafkaError) -> KafkaException:
    """The exception for a failed commit, retriable() when its code is a transient one."""
    if error.code() in TRANSIENT_COMMIT_ERRORS and not error.retriable():
        error = KafkaError(error.code(), error.str(), retriable=True)
    return KafkaException(error)


@dataclass(frozen=True)
class ExpiredInput:
    """Offsets of an assigned partition that this group will never read: expired below the log start before it
    read them (``committed`` set), or skipped by auto.offset.reset=latest with no committed offset."""

    topic: str
    partition: int
    committed: int | None
    log_start: int
    lost: int


class BatchConsumer:
    """Wraps confluent_kafka.Consumer; no network until `subscribe`. ``on_expired`` is told, at assignment, of
    input the group lost to retention (compared: committed offsets and the partitions' low watermarks)."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: Sequence[str],
        on_expired: Callable[[list[ExpiredInput]], None] | None = None,
        linger_s: float = _LINGER_S,
    ) -> None:
        self._config = config
        self._linger_s = linger_s
        self._topics = list(topics)
        self._on_expired = on_expired
        self._consumer: Consumer | None = None
        self.assignment: set[tuple[str, int]] = set()
        self.joined = False  # the group handed us an assignment (possibly empty) at least once
        self._refused: dict[tuple[str, int], int] = {}
        self._pending: dict[tuple[str, int], int] = {}  # committed without waiting, not answered yet
        self._failed: KafkaException | None = None  # a commit the coordinator refused for good (raised next)
        self._recommit_at = 0.0

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({**self._config, "on_commit": self._answered})
            self._consumer.subscribe(self._topics, on_assign=self._assigned, on_revoke=self._revoked,
                                     on_lost=self._lost)
        return self._consumer

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        """A batch of good messages; broker-level errors are raised (fatal) or logged (transient).

        librdkafka's consume(n, timeout) returns when it has n messages or the timeout has passed, so asking it for
        a full batch with any wait makes a partly filled queue wait out that time. Instead: what has already
        arrived is taken at once (under a steady feed, what came in while the last batch was processed: those
        messages have waited long enough); only a consumer that found nothing waits, up to `timeout_s`, for
        the first message, then at most `linger_s` for more, so a quiet topic still gives batches, not single
        messages."""
        client = self._client()
        self._raise_failed()
        if self._refused:
            self._recommit()
        polled: list[Message] = client.consume(max_messages, 0)
        if not polled:
            polled = client.consume(1, timeout_s)
            if polled and max_messages > 1:
                polled += client.consume(max_messages - 1, self._linger_s)
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
        """Commit the offset after the last message of each partition in ``messages`` (and any offset a rebalance
        refused earlier), without waiting: the answer is handled by `_answered` during the next consume(). A
        synchronous commit took a round trip to the coordinator per batch (~6 ms on loopback, ~4% of an ingest
        batch) for nothing: the database transaction is already committed and handling is idempotent, so a
        commit that fails is committed again (transient, rebalance) or stops the worker at the next call
        (anything else), and the worst case is a batch delivered again."""
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            key = (message.topic() or "", message.partition() or 0)
            offsets[key] = max(offsets.get(key, -1), (message.offset() or 0) + 1)
        owned = {tp: o for tp, o in offsets.items() if tp in self.assignment}
        lost = len(offsets) - len(owned)
        if lost:
            # Revoked meanwhile: the new owner redelivers them, and handling is idempotent.
            log.info("skipped commit for %d revoked partition(s)", lost)
        self._raise_failed()
        self._commit(owned, wait=False)

    def _commit(self, offsets: dict[tuple[str, int], int], wait: bool = True) -> None:
        # 1. what to commit: these offsets plus those a rebalance refused, for partitions we still own
        merged = {tp: o for tp, o in self._refused.items() if tp in self.assignment}
        for tp, offset in offsets.items():
            merged[tp] = max(merged.get(tp, -1), offset)
        for tp in merged:  # never behind a commit still unanswered (it could land first)
            merged[tp] = max(merged[tp], self._pending.get(tp, -1))
        if not merged:
            return
        wanted = [TopicPartition(t, p, o) for (t, p), o in sorted(merged.items())]
        # 2. commit; a refusal by a rebalance is remembered, not raised
        try:
            if not wait:
                self._client().commit(offsets=wanted, asynchronous=True)
                for tp, offset in merged.items():
                    self._pending[tp] = max(self._pending.get(tp, -1), offset)
                    if self._refused.get(tp, -1) <= offset:  # riding along; re-remembered if refused again
                        self._refused.pop(tp, None)
                return
            result = self._client().commit(offsets=wanted, asynchronous=False)
        except KafkaException as exc:
            error = _error_of(exc)
            if error is not None and error.code() == KafkaError._NO_OFFSET:
                result = None
            elif error is not None and error.code() in _REBALANCED:
                self._remember(merged, error)
                return
            else:
                raise commit_error(error) if error is not None else exc from None
        # 3. per-partition errors (a successful request can still refuse some partitions)
        failed = {(tp.topic, tp.partition): tp.error for tp in result or [] if tp.error is not None}
        for tp in merged.keys() - failed.keys():
            if self._refused.get(tp, -1) <= merged[tp]:
                self._refused.pop(tp, None)
            if self._pending.get(tp, -1) <= merged[tp]:
                self._pending.pop(tp, None)
        refused = {tp: merged[tp] for tp, e in failed.items() if e.code() in _REBALANCED}
        if refused:
            self._remember(refused, next(failed[tp] for tp in refused))
        for tp, error in failed.items():
            if tp not in refused:
                log.warning("commit of %s[%d] failed: %s", tp[0], tp[1], error)
                raise commit_error(error)

    def _answered(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's commit callback (served inside consume()): the answer to a commit that did not wait.
        Committed: forgotten. Refused by a rebalance or a coordinator moving: committed again (`_recommit`).
        Anything else: raised by the next consume() or commit(), which stops the worker as a synchronous
        commit's failure did; the batch after it was not committed and is delivered again."""
        answers = {(tp.topic, tp.partition): (tp.offset, tp.error or error) for tp in partitions}
        if error is not None and not answers:
            answers = {tp: (offset, error) for tp, offset in self._pending.items()}
        retry: dict[tuple[str, int], int] = {}
        for tp, (offset, failure) in answers.items():
            if self._pending.get(tp, -1) <= offset:  # answered, either way (a later commit may still be in flight)
                self._pending.pop(tp, None)
            if failure is None or failure.code() == KafkaError._NO_OFFSET:
                if self._refused.get(tp, -1) <= offset:  # an earlier refusal is covered: never commit it again
                    self._refused.pop(tp, None)
                continue
            if failure.code() in _REBALANCED or failure.code() in TRANSIENT_COMMIT_ERRORS:
                if tp in self.assignment and offset >= 0:
                    retry[tp] = offset
            elif self._failed is None:
                log.warning("commit of %s[%d] failed: %s", tp[0], tp[1], failure)
                self._failed = commit_error(failure)
        if retry:
            self._remember(retry, next(f for tp, (_, f) in answers.items() if tp in retry and f is not None))

    def _raise_failed(self) -> None:
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    def _remember(self, offsets: dict[tuple[str, int], int], error: KafkaError) -> None:
        new = {tp: o for tp, o in offsets.items() if self._refused.get(tp, -1) < o}
        self._refused.update(new)
        if not new:
            return
        # The database transaction is committed and handling is idempotent: whoever owns these partitions after
        # the rebalance either is us (the offsets are committed again below) or redelivers from the last commit.
        log.warning("commit refused by a rebalance (%s); committing %s again once it is over", error.name(),
                    ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(new.items())))

    def _recommit(self) -> None:
        """Commit the offsets a rebalance refused, for partitions this member still holds (else a partition
        whose position is already past them shows lag until new data arrives, and never again if none does)."""
        self._refused = {tp: o for tp, o in self._refused.items() if tp in self.assignment}
        if not self._refused or time.monotonic() < self._recommit_at:
            return
        self._recommit_at = time.monotonic() + _RECOMMIT_EVERY_S
        try:
            self._commit({})
        except KafkaException as exc:
            if not getattr(_error_of(exc), "retriable", lambda: False)():
                raise
            log.info("refused offsets not committed yet: %s", exc)
        if not self._refused:
            log.info("offsets refused by the rebalance are committed")

    @property
    def uncommitted(self) -> dict[tuple[str, int], int]:
        """Offsets refused by a rebalance and not committed yet (those committed without an answer yet are
        committed again, waiting, by `close`)."""
        return dict(self._refused)

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
            if self._refused or self._pending:  # committed again and waited for
                try:
                    self._commit({tp: o for tp, o in self._pending.items() if tp in self.assignment})
                except KafkaException as exc:  # the next owner redelivers them
                    log.warning("offsets were not committed before closing: %s", exc)
            self._consumer.close()
            self._consumer = None

    def _partitions(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in sorted(self.assignment)]

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment |= {(tp.topic, tp.partition) for tp in partitions}
        self.joined = True
        log.info("assigned %s", _names(partitions))
        if self._on_expired is not None and partitions:
            try:
                expired = self._expired(_consumer, partitions)
            except KafkaException as exc:  # never fails an assignment: the next one checks again
                log.warning("retention check of %s not done: %s", _names(partitions), exc)
                return
            if expired:
                self._on_expired(expired)

    def _expired(self, consumer: Consumer, partitions: list[TopicPartition]) -> list[ExpiredInput]:
        latest = str(self._config.get("auto.offset.reset", "latest")) in ("latest", "largest", "end")
        out = []
        for tp in consumer.committed(partitions, timeout=10):
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10,
                                                       cached=False)
            if tp.offset >= 0 and tp.offset < low:
                out.append(ExpiredInput(tp.topic, tp.partition, tp.offset, low, low - tp.offset))
            elif tp.offset < 0 and latest and high > low:
                out.append(ExpiredInput(tp.topic, tp.partition, None, low, high - low))
        return out

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Taken away (this member was fenced or timed out): a commit would be refused; the next owner delivers
        from the last committed offset."""
        self._drop({(tp.topic, tp.partition) for tp in partitions})
        log.info("lost %s", _names(partitions))

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # A revoke is only delivered inside consume(), after the last batch's offsets were sent; those still
        # unanswered are committed here, waiting, so the next owner starts after them (if this fails, it
        # delivers them again, and handling is idempotent).
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        unanswered = {tp: o for tp, o in self._pending.items() if tp in revoked}
        if unanswered:
            try:
                self._commit(unanswered)
            except KafkaException as exc:
                log.warning("offsets of revoked partitions not committed: %s", exc)
        self._drop(revoked)
        log.info("revoked %s", _names(partitions))

    def _drop(self, partitions: set[tuple[str, int]]) -> None:
        self.assignment -= partitions
        for tp in partitions:  # the next owner redelivers from the last committed offset
            self._refused.pop(tp, None)
            self._pending.pop(tp, None)


def _error_of(exc: KafkaException) -> KafkaError | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "-"
