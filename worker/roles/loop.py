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
from worker.config import KafkaSettings
from worker.roles.failures import Kind, classify
from worker.roles.runtime import RoleControl, StopRequested, retry_transient, stopped_by

log = logging.getLogger("worker.loop")


class Outcome(Protocol):
    @property
    def dead_letters(self) -> list[DeadLetter]: ...


class ConsumerLoop:
    """Runs one consumer role: ``handle`` turns a batch into effects (committed) and dead letters."""

    def __init__(
        self,
        name: str,
        consumer: BatchConsumer,
        handle: Callable[[Sequence[Message]], Outcome],
        dlq: DeadLetterPublisher,
        kafka: KafkaSettings,
        control: RoleControl,
        *,
        background: Callable[[], int] | None = None,
        on_batch: Callable[[Sequence[Message], Outcome], None] | None = None,
    ) -> None:
        self.name = name
        self._consumer = consumer
        self._handle = handle
        self._dlq = dlq
        self._kafka = kafka
        self._control = control
        self._stopper = control.stopper
        self._idle = control.idle
        self._heartbeat = control.heartbeat
        self._background = background
        self._on_batch = on_batch
        self._paused = False

    def run(self) -> int:
        """Until stopped (exit 0) or a bug or misconfiguration (exit 1, nothing committed past it)."""
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
                if not batch and not worked and self._idle.expired() and not self._consumer.uncommitted:
                    log.info("%s: idle, stopping", self.name)
                    break
        except StopRequested:
            log.info("%s: stopped while retrying; the batch is not committed and will be redelivered", self.name)
        except Exception as exc:
            if classify(exc) is not Kind.BUG:
                raise
            span = f"{where(batch[0])}..{where(batch[-1])}" if batch else "(no batch)"
            return stopped_by(self.name, exc, span)
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

        retry = self._control.retry
        outcome = retry_transient(
            attempt, retry, self._stopper, what=f"{self.name} batch at {where(batch[0])}",
            wait=self._paused_wait, on_retry=self._control.retried,
        )
        if self._paused:
            self._consumer.resume_all()
            self._paused = False
        # 6. commit offsets, without waiting for the answer (BatchConsumer: a refusal by a rebalance or a moving
        #    coordinator is committed again; any other is raised by the next call; revoke and close wait)
        retry_transient(lambda: self._consumer.commit(batch), retry, self._stopper,
                        what=f"{self.name} commit at {where(batch[0])}", on_retry=self._control.retried)
        if self._on_batch:
            self._on_batch(batch, outcome)

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
