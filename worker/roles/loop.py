"""The consumer loop shared by ingest and projector: batches, transient retries with paused partitions,
dead letters confirmed before offsets move, graceful stop, `--exit-when-idle`, bugs stop the worker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

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


class Staged(Protocol):
    """A batch whose effects were sent and not yet confirmed."""

    def complete(self) -> Outcome:
        """Confirm the effects (or apply them again, waiting); may be called again after a transient failure."""
        ...

    def close(self) -> None:
        """Give up on confirming (the batch is not acknowledged: it is delivered again)."""
        ...


class Pipelined(Protocol):
    """A role whose batch n+1 is decoded while batch n's commit is confirmed (ingest)."""

    def predecode(self, messages: Sequence[Message]) -> Any:
        """Pure work on a batch, done ahead; None when it could not be (`start` then does it)."""
        ...

    def start(self, messages: Sequence[Message], predecoded: Any) -> Staged: ...


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
        pipelined: Pipelined | None = None,
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
        self._pipelined = pipelined
        self._paused = False

    def run(self) -> int:
        """Until stopped (exit 0) or a bug or misconfiguration (exit 1, nothing committed past it)."""
        batch: Sequence[Message] = ()
        staged: tuple[Sequence[Message], Staged] | None = None
        try:
            while not self._stopper.stopping:
                self._heartbeat()
                # 1. consume a batch; with one staged, only what has already arrived (else it is confirmed first)
                consumed = self._consumer.consume(self._kafka.batch_size, 0 if staged else self._kafka.batch_timeout_s)
                if consumed or not self._consumer.joined:  # idle time counts once the group has let us in
                    self._idle.busy()
                if self._pipelined is not None:
                    # pipelined: this batch is decoded while the staged one's commit completes, then that one is
                    # confirmed (steps 4-6), then this one is decided and its commit sent
                    predecoded = self._pipelined.predecode(consumed) if consumed and staged else None
                    if staged is not None:
                        (batch, sent), staged = staged, None  # `batch`: what a failure names
                        self._finish(batch, sent)
                    if consumed:
                        batch = consumed
                        staged = (batch, self._start(batch, predecoded))
                elif consumed:
                    batch = consumed
                    self._run_batch(batch)
                batch = ()
                worked = self._background() if self._background else 0
                if worked:
                    self._idle.busy()
                if (not consumed and staged is None and not worked and self._idle.expired()
                        and not self._consumer.uncommitted):
                    log.info("%s: idle, stopping", self.name)
                    break
            if staged is not None:  # stopping: the batch sent is confirmed and acknowledged
                (batch, sent), staged = staged, None
                self._finish(batch, sent)
        except StopRequested:
            log.info("%s: stopped while retrying; the batch is not committed and will be redelivered", self.name)
        except Exception as exc:
            if classify(exc) is not Kind.BUG:
                raise
            span = f"{where(batch[0])}..{where(batch[-1])}" if batch else "(no batch)"
            return stopped_by(self.name, exc, span)
        finally:
            if staged is not None:
                staged[1].close()
            self._consumer.close()
        return 0

    def _start(self, batch: Sequence[Message], predecoded: Any) -> Staged:
        """Steps 2-4 of a pipelined role with the commit sent, retried like an attempt on a transient fault."""
        assert self._pipelined is not None
        pipelined = self._pipelined
        return retry_transient(
            lambda: pipelined.start(batch, predecoded), self._control.retry, self._stopper,
            what=f"{self.name} batch at {where(batch[0])}", wait=self._paused_wait, on_retry=self._control.retried,
        )

    def _finish(self, batch: Sequence[Message], staged: Staged) -> None:
        """Steps 4 (confirmed) to 6 of a staged batch."""
        self._settle(batch, staged.complete)

    def _run_batch(self, batch: Sequence[Message]) -> None:
        # 2-4. decode, decide, commit the database transaction
        self._settle(batch, lambda: self._handle(batch))

    def _settle(self, batch: Sequence[Message], handle: Callable[[], Outcome]) -> None:
        def attempt() -> Outcome:
            outcome = handle()
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
