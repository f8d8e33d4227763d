"""How a batch is gathered, against a fake that answers consume(n, timeout) as librdkafka does: it returns once it
holds n messages or the timeout has passed, whichever comes first. A queue that already holds part of a batch must
be taken at once (under a steady feed those messages arrived while the last batch was processed); only an idle
consumer waits, for its first message and then `linger_s` for more."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from worker.adapters.kafka.consumer import BatchConsumer


@dataclass
class Record:
    offset: int

    def error(self) -> None:
        return None


@dataclass
class LibrdkafkaQueue:
    """Messages arriving at given (virtual) times; `now` moves only while a consume() call waits."""

    arrivals: list[float]
    now: float = 0.0
    _taken: int = 0

    def consume(self, n: int, timeout: float) -> list[Record]:
        pending = self.arrivals[self._taken:]
        # librdkafka: return as soon as n messages are queued, else when the timeout is over
        ready_at = pending[n - 1] if len(pending) >= n else float("inf")
        self.now = max(self.now, min(ready_at, self.now + timeout))
        got = [i for i, at in enumerate(pending[:n]) if at <= self.now]
        start = self._taken
        self._taken += len(got)
        return [Record(start + i) for i in got]


def consumer_over(queue: LibrdkafkaQueue, linger_s: float = 0.02) -> BatchConsumer:
    consumer = BatchConsumer({}, ["t"], linger_s=linger_s)
    consumer._consumer = queue  # type: ignore[assignment]
    return consumer


def test_a_queue_holding_part_of_a_batch_is_taken_at_once_without_waiting_for_the_rest() -> None:
    queue = LibrdkafkaQueue(arrivals=[0.0] * 300 + [5.0] * 300)
    batch = consumer_over(queue).consume(500, 0.5)
    assert len(batch) == 300
    assert queue.now == 0.0  # the old way asked for 500 and sat out its wait: ~70 ms a batch under a steady feed


def test_a_backlog_gives_full_batches_at_once() -> None:
    queue = LibrdkafkaQueue(arrivals=[0.0] * 1200)
    consumer = consumer_over(queue)
    assert [len(consumer.consume(500, 0.5)) for _ in range(3)] == [500, 500, 200]
    assert queue.now == 0.0


def test_an_idle_consumer_waits_for_its_first_message_then_lingers_for_more() -> None:
    arrivals = [0.30, 0.305, 0.31, 0.319, 0.33, 0.40]
    queue = LibrdkafkaQueue(arrivals=arrivals)
    batch = consumer_over(queue, linger_s=0.02).consume(500, 0.5)
    assert [r.offset for r in batch] == [0, 1, 2, 3]  # what came within linger_s of the first
    assert queue.now == pytest.approx(0.32)


def test_a_batch_that_fills_while_lingering_returns_when_full() -> None:
    queue = LibrdkafkaQueue(arrivals=[0.1] + [0.105] * 10)
    batch = consumer_over(queue, linger_s=0.02).consume(5, 0.5)
    assert len(batch) == 5 and queue.now == pytest.approx(0.105)


def test_nothing_arriving_returns_an_empty_batch_after_the_timeout() -> None:
    queue = LibrdkafkaQueue(arrivals=[9.0])
    assert consumer_over(queue).consume(500, 0.5) == []
    assert queue.now == pytest.approx(0.5)
