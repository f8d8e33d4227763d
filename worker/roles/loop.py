"""The consumer loop shared by ingest and projector: batches, transient retries with paused partitions,
dead letters confirmed before offsets move, graceful stop, `--exit-when-idle`, bugs stop the worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from confluent_kafka import Message

from worker.adapters.kafka.consumer import BatchConsumer
from worker.adapters.kafka.dlq import DeadLetter, DeadLetterPublisher
from worker.adapters.kafka.types import where
from worker.config import KafkaSettings, RetrySettings
from worker.roles.failures import Kind, classify
from worker.roles.runtime import IdleClock, Stopper, StopRequested, retry_transient

log = logging.getLogger("worker.loop")


class Outcome(Protocol):
    @property
    def dead_letters(self) -> list[DeadLetter]: ...


class ConsumerLoop:
    def __init__(
        self,
        name: str,
        consumer: BatchConsumer,
        handle: Callable[[Sequence[Message]], Outcome],
        dlq: DeadLetterPublisher,
        kafka: KafkaSettings,
        retry: RetrySettings,
        stopper: Stopper,
        idle: IdleClock,
        background: Callable[[], int] | None = None,
        on_batch: Callable[[Sequence[Message], Outcome], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        on_retry: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self._heartbeat = heartbeat or (lambda: None)
        self._on_retry = on_retry
        self.name = name
        self._consumer = consumer
        self._handle = handle
        self._dlq = dlq
        self._kafka = kafka
        self._retry = retry
        self._stopper = stopper
        self._idle = idle
        self._background = background
        self._on_batch = on_batch
        self._paused = False

    def run(self) -> int:
        """Until stopped (exit 0) or a bug (exit 1, nothing committed past it)."""
        batch: Sequence[Message] = ()
        try:
            while not self._stopper.stopping:
                self._heartbeat()
                # 1. consume a batch
                batch = self._consumer.consume(self._kafka.batch_size, self._kafka.batch_timeout_s)
                if batch or not self._consumer.joined:  # idle time counts once the group has let us in
                    self._idle.busy()
                if batch:
                    self._run_batch(batch)
                    batch = ()
                worked = self._background() if self._background else 0
                if worked:
                    self._idle.busy()
                if not batch and not worked and self._idle.expired():
                    log.info("%s: idle, stopping", self.name)
                    break
        except StopRequested:
            log.info("%s: stopped while retrying; the batch is not committed and will be redelivered", self.name)
        except Exception as exc:
            if classify(exc) is not Kind.BUG:
                raise
            span = f"{where(batch[0])}..{where(batch[-1])}" if batch else "(no batch)"
            log.exception("%s: unclassified failure at %s; stopping without committing past it", self.name, span)
            return 1
        finally:
            self._consumer.close()
        return 0

    def _run_batch(self, batch: Sequence[Message]) -> None:
        def attempt() -> Outcome:
            # 2-4. decode, decide, commit the database transaction
            outcome = self._handle(batch)
            # 5. dead letters confirmed before any offset moves
            for letter in outcome.dead_letters:
                self._dlq.publish(letter)
            self._dlq.flush()
            return outcome

        outcome = retry_transient(
            attempt, self._retry, self._stopper, what=f"{self.name} batch at {where(batch[0])}",
            wait=self._paused_wait, on_retry=self._retried,
        )
        if self._paused:
            self._consumer.resume_all()
            self._paused = False
        # 6. commit offsets, synchronously (a broker hiccup is retried like any transient fault)
        retry_transient(lambda: self._consumer.commit(batch), self._retry, self._stopper,
                        what=f"{self.name} commit at {where(batch[0])}", on_retry=self._retried)
        if self._on_batch:
            self._on_batch(batch, outcome)

    def _retried(self, error: BaseException, attempt: int) -> None:
        self._heartbeat()  # waiting out an outage is alive
        if self._on_retry:
            self._on_retry(error, attempt)

    def _paused_wait(self, seconds: float) -> None:
        """Back off with the partitions paused, still polling so max.poll.interval.ms is never exceeded."""
        if not self._paused:
            self._consumer.pause_all()
            self._paused = True
        deadline = time.monotonic() + seconds
        while not self._stopper.stopping and (left := deadline - time.monotonic()) > 0:
            self._heartbeat()
            stray = self._consumer.consume(100, min(left, 1.0))
            if stray:  # prefetched before the pause: deliver them again later
                self._consumer.seek_to(stray)
