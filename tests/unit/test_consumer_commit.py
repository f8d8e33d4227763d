"""Committing after a batch, against a fake librdkafka consumer that fails on cue and answers a commit that did not
wait as librdkafka does (one commit callback per commit, served inside the next consume()): a commit a rebalance
refused, or a coordinator moving refused, is committed again while this member still holds the partition (no
phantom lag); per-partition errors are not discarded; anything else stops the worker as a bug; a revoke or a close
commits, waiting, what is still unanswered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from tests.fakes.kafka import FakeProducer, OffsetMessage
from worker.adapters.kafka.consumer import BatchConsumer
from worker.adapters.kafka.dlq import DeadLetter, DeadLetterPublisher
from worker.config import KafkaSettings, RetrySettings
from worker.roles.failures import Kind, classify
from worker.roles.loop import ConsumerLoop
from worker.roles.runtime import IdleClock, RoleControl, Stopper


@dataclass
class PartitionResult:
    topic: str
    partition: int
    offset: int
    error: KafkaError | None = None


@dataclass
class FakeClient:
    """Each commit takes the next answer: an error code (raised by a commit that waits; the callback's error for
    one that did not), a {partition: code} of per-partition errors, or None (success). As librdkafka does, a
    commit that did not wait is answered once, through the commit callback, inside the next consume(); one that
    waits returns its answer and calls no callback."""

    answers: list[Any] = field(default_factory=list)
    commits: list[dict[tuple[str, int], int]] = field(default_factory=list)
    waited: list[bool] = field(default_factory=list)
    batches: list[list[Any]] = field(default_factory=list)
    on_commit: Any = None
    unanswered: list[tuple[KafkaError | None, list[PartitionResult]]] = field(default_factory=list)

    def commit(self, offsets: Any, asynchronous: bool) -> list[PartitionResult] | None:
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
        self.waited.append(not asynchronous)
        answer = self.answers.pop(0) if self.answers else None
        if isinstance(answer, int) and not asynchronous:
            raise KafkaException(KafkaError(answer))
        errors = answer if isinstance(answer, dict) else {}
        results = [PartitionResult(tp.topic, tp.partition, tp.offset,
                                   KafkaError(errors[tp.partition]) if tp.partition in errors else None)
                   for tp in offsets]
        if not asynchronous:
            return results
        self.unanswered.append((KafkaError(answer) if isinstance(answer, int) else None, results))
        return None

    def consume(self, _n: int, _timeout: float) -> list[Any]:
        while self.unanswered:
            self.on_commit(*self.unanswered.pop(0))
        return self.batches.pop(0) if self.batches else []

    def pause(self, _p: Any) -> None: ...

    def resume(self, _p: Any) -> None: ...

    def close(self) -> None: ...


def consumer_with(client: FakeClient, partitions: Sequence[int] = (0,)) -> BatchConsumer:
    consumer = BatchConsumer({}, ["t"])
    consumer._consumer = client  # type: ignore[assignment]
    client.on_commit = consumer._answered
    consumer.assignment = {("t", p) for p in partitions}
    consumer.joined = True
    return consumer


REBALANCED = [KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID]


def test_a_commit_does_not_wait_and_its_answer_is_taken_during_the_next_consume() -> None:
    client = FakeClient(batches=[[], []])
    consumer = consumer_with(client, partitions=(0, 1))
    consumer.commit([OffsetMessage(partition_=0, offset_=4), OffsetMessage(partition_=1, offset_=7)])
    assert client.commits == [{("t", 0): 5, ("t", 1): 8}] and client.waited == [False]
    assert consumer._pending == {("t", 0): 5, ("t", 1): 8}
    consumer.consume(10, 0.01)
    assert consumer._pending == {} and consumer.uncommitted == {} and len(client.commits) == 1


@pytest.mark.parametrize("code", [*REBALANCED, KafkaError.NOT_COORDINATOR, KafkaError.REQUEST_TIMED_OUT,
                                  KafkaError._TRANSPORT])
def test_a_commit_refused_by_a_rebalance_or_a_moving_coordinator_is_committed_again_while_the_partition_is_ours(
    code: int,
) -> None:
    client = FakeClient(answers=[code])
    consumer = consumer_with(client)
    consumer.commit([OffsetMessage(offset_=255)])
    # the answer comes with the next poll; cooperative-sticky kept the partition and no new data arrives
    assert consumer.consume(10, 0.01) == []
    assert consumer.uncommitted == {("t", 0): 256}
    consumer.consume(10, 0.01)  # the next poll commits what was refused, waiting for the answer
    assert client.commits == [{("t", 0): 256}, {("t", 0): 256}] and client.waited == [False, True]
    assert consumer.uncommitted == {}


def test_offsets_refused_while_the_rebalance_lasts_are_tried_again_until_they_are_committed() -> None:
    client = FakeClient(answers=[KafkaError.REBALANCE_IN_PROGRESS, KafkaError.REBALANCE_IN_PROGRESS, None])
    consumer = consumer_with(client)
    consumer.commit([OffsetMessage(offset_=9)])
    consumer.consume(10, 0.01)  # answered: refused
    consumer.consume(10, 0.01)  # committed again: refused again
    assert consumer.uncommitted == {("t", 0): 10}
    consumer._recommit_at = 0.0  # the throttle between attempts has passed
    consumer.consume(10, 0.01)
    assert consumer.uncommitted == {} and len(client.commits) == 3


def test_refused_offsets_of_a_partition_revoked_meanwhile_are_left_to_its_new_owner() -> None:
    client = FakeClient(answers=[KafkaError.ILLEGAL_GENERATION])
    consumer = consumer_with(client, partitions=(0, 1))
    consumer.commit([OffsetMessage(partition_=0, offset_=4), OffsetMessage(partition_=1, offset_=7)])
    consumer.consume(10, 0.01)
    from confluent_kafka import TopicPartition

    consumer._revoked(None, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    consumer.consume(10, 0.01)
    assert client.commits[-1] == {("t", 0): 5}
    assert consumer.uncommitted == {}


def test_a_revoke_commits_the_unanswered_offsets_of_its_partitions_waiting() -> None:
    client = FakeClient()
    consumer = consumer_with(client, partitions=(0, 1))
    consumer.commit([OffsetMessage(partition_=0, offset_=4), OffsetMessage(partition_=1, offset_=7)])
    from confluent_kafka import TopicPartition

    consumer._revoked(None, [TopicPartition("t", 1)])  # type: ignore[arg-type]  # before the answer came
    assert client.commits[-1] == {("t", 1): 8} and client.waited[-1] is True
    assert consumer.assignment == {("t", 0)} and ("t", 1) not in consumer._pending


def test_close_commits_the_unanswered_offsets_waiting() -> None:
    client = FakeClient()
    consumer = consumer_with(client)
    consumer.commit([OffsetMessage(offset_=41)])
    consumer.close()
    assert client.commits == [{("t", 0): 42}, {("t", 0): 42}] and client.waited == [False, True]


def test_a_refused_offset_rides_along_with_the_next_commit_and_never_goes_backwards() -> None:
    client = FakeClient(answers=[KafkaError.ILLEGAL_GENERATION, None])
    consumer = consumer_with(client, partitions=(0, 1))
    consumer.commit([OffsetMessage(partition_=0, offset_=4), OffsetMessage(partition_=1, offset_=2)])
    consumer.consume(10, 0.01)
    consumer._recommit_at = float("inf")  # not committed again by the poll: by the next batch's commit
    consumer.consume(10, 0.01)
    consumer.commit([OffsetMessage(partition_=0, offset_=8)])
    assert client.commits[-1] == {("t", 0): 9, ("t", 1): 3}
    consumer.consume(10, 0.01)
    assert consumer.uncommitted == {} and consumer._pending == {}


def test_a_per_partition_commit_error_is_not_discarded() -> None:
    client = FakeClient(answers=[{1: KafkaError.OFFSET_METADATA_TOO_LARGE}])
    consumer = consumer_with(client, partitions=(0, 1))
    consumer.commit([OffsetMessage(partition_=0, offset_=1), OffsetMessage(partition_=1, offset_=1)])
    consumer.consume(10, 0.01)  # the answer
    with pytest.raises(KafkaException) as raised:
        consumer.consume(10, 0.01)
    assert raised.value.args[0].code() == KafkaError.OFFSET_METADATA_TOO_LARGE
    assert classify(raised.value) is Kind.BUG


def test_a_per_partition_refusal_by_a_rebalance_is_remembered_too() -> None:
    client = FakeClient(answers=[{1: KafkaError.ILLEGAL_GENERATION}])
    consumer = consumer_with(client, partitions=(0, 1))
    consumer.commit([OffsetMessage(partition_=0, offset_=1), OffsetMessage(partition_=1, offset_=3)])
    consumer._recommit_at = float("inf")
    consumer.consume(10, 0.01)
    assert consumer.uncommitted == {("t", 1): 4}


@pytest.mark.parametrize("code", [KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
                                  KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.REQUEST_TIMED_OUT,
                                  KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._WAIT_COORD])
def test_a_coordinator_moving_or_out_of_reach_makes_a_commit_that_waits_fail_transiently(code: int) -> None:
    consumer = consumer_with(FakeClient(answers=[code]))
    with pytest.raises(KafkaException) as raised:
        consumer._commit({("t", 0): 1})
    assert classify(raised.value) is Kind.TRANSIENT


@pytest.mark.parametrize("code", [KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.INVALID_COMMIT_OFFSET_SIZE])
def test_any_other_commit_failure_is_still_a_bug(code: int) -> None:
    consumer = consumer_with(FakeClient(answers=[code, code]))
    with pytest.raises(KafkaException) as raised:
        consumer._commit({("t", 0): 1})  # waiting
    assert classify(raised.value) is Kind.BUG
    consumer.commit([OffsetMessage()])  # not waiting: raised by the next call
    consumer.consume(10, 0.01)
    with pytest.raises(KafkaException) as raised:
        consumer.commit([OffsetMessage(offset_=1)])
    assert classify(raised.value) is Kind.BUG


@dataclass
class Handled:
    dead_letters: list[DeadLetter] = field(default_factory=list)


def loop_over(client: FakeClient, handle: Any = None) -> ConsumerLoop:
    consumer = consumer_with(client)
    kafka = KafkaSettings(batch_timeout_s=0.01)
    retry = RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.01)
    control = RoleControl(Stopper(), IdleClock(0.05), retry)
    dlq = DeadLetterPublisher(FakeProducer(), "g")  # type: ignore[arg-type]
    return ConsumerLoop("test", consumer, handle or (lambda _batch: Handled()), dlq, kafka, control)


def test_the_loop_retries_a_commit_while_the_coordinator_moves_and_exits_cleanly() -> None:
    client = FakeClient(answers=[KafkaError.NOT_COORDINATOR], batches=[[OffsetMessage(offset_=3)]])
    assert loop_over(client).run() == 0
    assert client.commits == [{("t", 0): 4}, {("t", 0): 4}]


def test_exit_when_idle_waits_until_offsets_a_rebalance_refused_are_committed() -> None:
    client = FakeClient(answers=[KafkaError.REBALANCE_IN_PROGRESS], batches=[[OffsetMessage(offset_=255)]])
    loop = loop_over(client)
    assert loop.run() == 0
    assert client.commits[-1] == {("t", 0): 256} and loop._consumer.uncommitted == {}


def test_a_misconfiguration_stops_the_loop_with_one_error_line_and_exit_1(caplog: pytest.LogCaptureFixture) -> None:
    from worker.adapters.salesforce.schemas import SchemaRegistryRefused

    def handle(_batch: Any) -> Handled:
        raise SchemaRegistryRefused("the Schema Registry at http://sr refused the worker (HTTP 401)")

    client = FakeClient(batches=[[OffsetMessage(offset_=3)]])
    assert loop_over(client, handle).run() == 1
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "HTTP 401" in record.getMessage() and record.exc_info is None
    assert client.commits == []  # nothing committed past it


def test_an_earlier_refusal_is_not_committed_again_once_a_later_commit_is_answered() -> None:
    client = FakeClient(answers=[KafkaError.NOT_COORDINATOR, None])
    consumer = consumer_with(client)
    consumer.commit([OffsetMessage(offset_=4)])
    consumer.commit([OffsetMessage(offset_=9)])  # sent before the first answer came
    consumer.consume(10, 0.01)  # both answers: 5 refused, then 10 committed
    assert consumer.uncommitted == {} and consumer._pending == {}
    consumer.consume(10, 0.01)
    assert client.commits == [{("t", 0): 5}, {("t", 0): 10}]  # 5 never committed after 10


def test_a_refused_offset_committed_again_is_never_behind_a_commit_still_unanswered() -> None:
    client = FakeClient(answers=[KafkaError.NOT_COORDINATOR, None, None])
    consumer = consumer_with(client)
    consumer.commit([OffsetMessage(offset_=4)])
    consumer.commit([OffsetMessage(offset_=9)])
    late = client.unanswered.pop()  # the answer to 10 is late
    consumer.consume(10, 0.01)  # the answer to 5: refused
    assert consumer.uncommitted == {("t", 0): 5}
    consumer.consume(10, 0.01)  # committed again, waiting: as 10, not 5 (which could land after 10)
    assert client.commits[-1] == {("t", 0): 10} and client.waited[-1] is True
    client.unanswered.append(late)
    consumer.consume(10, 0.01)
    assert consumer.uncommitted == {} and consumer._pending == {}


def test_lost_partitions_are_dropped_without_a_commit() -> None:
    client = FakeClient()
    consumer = consumer_with(client, partitions=(0, 1))
    consumer.commit([OffsetMessage(partition_=1, offset_=7)])
    from confluent_kafka import TopicPartition

    consumer._lost(None, [TopicPartition("t", 1)])  # type: ignore[arg-type]
    assert client.commits == [{("t", 1): 8}] and consumer.assignment == {("t", 0)} and consumer._pending == {}
