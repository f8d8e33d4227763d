"""The outbox relay: publishes unpublished outbox rows in position order to `client.events`, deletes them after
the broker acknowledged them. One active relay (advisory lock); the others wait as standbys. A crash between
publish and delete re-sends rows with the same `event_id`, which projections drop by version."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Producer

from worker.adapters.kafka.producer import PublishFailed
from worker.adapters.postgres.outbox import OutboxRow, PostgresOutbox
from worker.config import RetrySettings
from worker.roles.failures import Kind, classify
from worker.roles.runtime import IdleClock, Stopper, StopRequested, retry_transient

log = logging.getLogger("worker.relay")
BACKLOG_EVERY_S = 5.0  # how often the backlog gauge is refreshed

def event_headers(row: OutboxRow) -> list[tuple[str, str | bytes | None]]:
    values = {
        "event_type": row.event_type,
        "event_id": row.event_id,
        "schema_version": str(row.schema_version),
        "correlation_id": row.metadata.get("correlation_id"),
        "causation_id": row.metadata.get("causation_id"),
        "traceparent": row.metadata.get("traceparent"),
    }
    return [(k, str(v).encode()) for k, v in values.items() if v is not None]


class OutboxRelay:
    def __init__(
        self,
        outbox: PostgresOutbox,
        producer: Producer,
        topic: str,
        encode: Callable[[OutboxRow], bytes],
        retry: RetrySettings,
        stopper: Stopper,
        idle: IdleClock,
        batch_size: int = 500,
        on_published: Callable[[list[OutboxRow]], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        on_retry: Callable[[BaseException, int], None] | None = None,
        on_backlog: Callable[[int, Any], None] | None = None,
    ) -> None:
        self._heartbeat = heartbeat or (lambda: None)
        self._on_retry = on_retry
        self._on_backlog = on_backlog
        self._backlog_at = 0.0
        self._outbox = outbox
        self._producer = producer
        self._topic = topic
        self._encode = encode
        self._retry = retry
        self._stopper = stopper
        self._idle = idle
        self._batch_size = batch_size
        self._on_published = on_published

    def run(self) -> int:
        try:
            while not self._stopper.stopping:
                self._heartbeat()
                published = retry_transient(self.step, self._retry, self._stopper, what="relay",
                                            on_retry=self._retried)
                if published:
                    self._idle.busy()
                elif self._idle.expired():
                    break
                else:
                    self._stopper.wait(0.1)
        except StopRequested:
            pass
        except Exception as exc:
            if classify(exc) is not Kind.BUG:
                raise
            log.exception("relay: unclassified failure; stopping")
            return 1
        finally:
            self._producer.flush(10)
            self._outbox.close()
        return 0

    def _retried(self, error: BaseException, attempt: int) -> None:
        self._heartbeat()
        if self._on_retry:
            self._on_retry(error, attempt)

    def step(self) -> int:
        """Publish one page of unpublished rows; return how many were acknowledged (and deleted)."""
        if not self._outbox.lead():
            return 0  # a standby: another relay holds the lock
        if self._on_backlog and time.monotonic() - self._backlog_at >= BACKLOG_EVERY_S:
            self._backlog_at = time.monotonic()
            self._on_backlog(*self._outbox.backlog())
        rows = self._outbox.unpublished(self._batch_size)
        if not rows:
            return 0
        delivered: set[int] = set()
        errors: list[Any] = []

        def report_for(position: int) -> Any:
            def report(err: KafkaError | None, _msg: Any) -> None:
                if err is None:
                    delivered.add(position)
                else:
                    errors.append(err)

            return report

        for row in rows:
            self._producer.produce(
                self._topic,
                key=row.stream_id.encode(),
                value=self._encode(row),
                headers=event_headers(row),
                on_delivery=report_for(row.position),
            )
            self._producer.poll(0)
        self._producer.flush(60)
        self._outbox.delete_published(sorted(delivered))
        if self._on_published:
            self._on_published([r for r in rows if r.position in delivered])
        if errors or len(delivered) < len(rows):
            raise PublishFailed(f"{len(rows) - len(delivered)} of {len(rows)} not acknowledged: {errors[:3]}")
        return len(delivered)
