"""The ingest loop's pipeline (`prepare`): the next batch, taken from what has already arrived, is prepared in a
background thread while the current one is handled; each batch is still handled, its dead letters confirmed and its
offsets committed before the next one is handled, in order."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.kafka import FakeProducer, OffsetMessage
from tests.unit.test_consumer_commit import FakeClient, consumer_with
from worker.adapters.kafka.dlq import DeadLetter, DeadLetterPublisher
from worker.config import KafkaSettings, RetrySettings
from worker.roles.loop import ConsumerLoop
from worker.roles.runtime import IdleClock, RoleControl, Stopper


@dataclass
class Handled:
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass
class Recorder:
    """Logs what happens in order: prepare (with its thread), handle (with what it was given), commits."""

    client: FakeClient
    log: list[tuple[Any, ...]] = field(default_factory=list)
    fail_prepare_for: set[int] = field(default_factory=set)
    waiting_when_handled: list[int] = field(default_factory=list)  # messages not yet consumed at each handle

    def prepare(self, batch: Sequence[Any]) -> list[int]:
        first = batch[0].offset()
        self.log.append(("prepare", first, threading.current_thread() is threading.main_thread()))
        if first in self.fail_prepare_for:
            raise RuntimeError("schema registry down")
        return [m.offset() for m in batch]

    def handle(self, batch: Sequence[Any], prepared: list[int] | None) -> Handled:
        self.log.append(("handle", [m.offset() for m in batch], prepared, len(self.client.commits)))
        self.waiting_when_handled.append(sum(map(len, self.client.batches)))
        return Handled()


def pipelined(client: FakeClient, partitions: Sequence[int] = (0,)) -> tuple[ConsumerLoop, Recorder]:
    recorder = Recorder(client)
    control = RoleControl(Stopper(), IdleClock(0.05), RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.01))
    loop = ConsumerLoop("ingest", consumer_with(client, partitions), recorder.handle,
                        DeadLetterPublisher(FakeProducer(), "g"), KafkaSettings(batch_timeout_s=0.01),  # type: ignore[arg-type]
                        control, prepare=recorder.prepare)
    return loop, recorder


def batch(*offsets: int, partition: int = 0) -> list[OffsetMessage]:
    return [OffsetMessage(partition_=partition, offset_=o) for o in offsets]


def arriving(*batches: list[OffsetMessage]) -> list[list[OffsetMessage]]:
    """What the fake client's consume() hands out: each batch, then nothing (so a batch is drained alone)."""
    return [part for b in batches for part in (b, [])]


def test_batches_are_prepared_off_the_main_thread_and_handled_in_order_each_committed_before_the_next() -> None:
    client = FakeClient(batches=[*arriving(batch(0, 1)), batch(2, 3), batch(4)])  # a backlog after the first
    loop, recorder = pipelined(client)
    assert loop.run() == 0
    assert recorder.waiting_when_handled == [1, 0, 0]  # the next batch was taken before this one was handled
    handled = [entry for entry in recorder.log if entry[0] == "handle"]
    # each batch gets what was prepared for it; the commits made before it: every earlier batch's
    assert handled == [("handle", [0, 1], [0, 1], 0), ("handle", [2, 3], [2, 3], 1), ("handle", [4], [4], 2)]
    assert client.commits == [{("t", 0): 2}, {("t", 0): 4}, {("t", 0): 5}]
    assert all(not on_main for name, _, on_main in (e for e in recorder.log if e[0] == "prepare"))


def test_a_batch_whose_preparation_failed_is_handled_unprepared_so_its_attempt_prepares_and_retries() -> None:
    client = FakeClient(batches=arriving(batch(0), batch(1)))
    loop, recorder = pipelined(client)
    recorder.fail_prepare_for = {0}
    assert loop.run() == 0
    assert [e for e in recorder.log if e[0] == "handle"] == [("handle", [0], None, 0), ("handle", [1], [1], 1)]


def test_messages_of_a_partition_revoked_while_their_batch_waited_are_left_to_the_next_owner() -> None:
    client = FakeClient(batches=arriving(batch(0, partition=0) + batch(7, partition=1), batch(1, partition=0)))
    loop, recorder = pipelined(client, partitions=(0, 1))
    consumer = loop._consumer
    real_consume = consumer.consume

    def consume_then_revoke(n: int, timeout: float) -> Any:
        got = real_consume(n, timeout)
        if got and got[0].offset() == 1:  # the second consume: partition 1 goes to another member
            consumer.assignment.discard(("t", 1))
        return got

    consumer.consume = consume_then_revoke  # type: ignore[method-assign]
    assert loop.run() == 0
    handled = [e for e in recorder.log if e[0] == "handle"]
    assert handled[0][1] == [0]  # offset 7 of partition 1 was not handled here
    assert all(("t", 1) not in c for c in client.commits)


def test_a_stop_finishes_the_batch_already_consumed() -> None:
    client = FakeClient(batches=arriving(batch(0), batch(1)))
    loop, recorder = pipelined(client)
    stopper = loop._stopper
    original = recorder.handle

    def handle_then_stop(b: Sequence[Any], prepared: Any) -> Handled:
        stopper.stop()  # SIGTERM while the first batch is handled: the second is already consumed
        return original(b, prepared)

    loop._handle = handle_then_stop
    assert loop.run() == 0
    assert [e[1] for e in recorder.log if e[0] == "handle"] == [[0], [1]]
    assert client.commits == [{("t", 0): 1}, {("t", 0): 2}]
