"""The outbox relay: publishes unpublished outbox rows in position order to `client.events`, deletes them after
the broker acknowledged them. One active relay (advisory lock); the others wait as standbys. A crash between
publish and delete re-sends rows with the same `event_id`, which projections drop by version.

A row that cannot be published (no writer schema in this relay, e.g. a newer worker wrote it during a rolling
deploy; or larger than the broker accepts; or its event is not in the events table, which never should happen)
is parked, not dead-lettered: dropping one event from a stream would make the projector see a version gap for
that client forever. Its stream waits in the outbox (an ERROR line, `worker_outbox_parked`, the backlog age)
while every other stream goes on; the next relay process tries it again (a newer deploy, raised size limits, or
the event restored, publishes it in order)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from worker.adapters.avro import UnknownEventSchema
from worker.adapters.kafka.producer import DELIVERY_MARGIN_S, MESSAGE_TIMEOUT_MS, PublishFailed, TopicUnusable
from worker.adapters.postgres.outbox import OutboxRow, PostgresOutbox
from worker.roles.failures import Kind, classify
from worker.roles.runtime import RoleControl, StopRequested, retry_transient, stopped_by

log = logging.getLogger("worker.relay")

_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
_TOUCH_EVERY_S = 5.0


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


def acknowledged_prefix(rows: Sequence[OutboxRow], delivered: set[int]) -> list[OutboxRow]:
    """The rows that may leave the outbox: per stream, the delivered ones before its first row that was not.
    A later row of that stream stays and is sent again after it, so its versions reach the topic in order."""
    stopped: set[str] = set()
    done = []
    for row in sorted(rows, key=lambda r: r.position):
        if row.stream_id in stopped:
            continue
        if row.position in delivered:
            done.append(row)
        else:
            stopped.add(row.stream_id)
    return done


@dataclass(frozen=True)
class RelaySettings:
    topic: str
    batch_size: int = 500
    backlog_every_s: float = 5.0
    wake_fallback_s: float = 0.5  # with nothing to publish: wait this long at most for an ingest commit's NOTIFY
    delivery_timeout_s: float = MESSAGE_TIMEOUT_MS / 1000 + DELIVERY_MARGIN_S  # message.timeout.ms + margin


@dataclass(frozen=True)
class RelayHooks:
    on_published: Callable[[list[OutboxRow]], None] | None = None
    on_backlog: Callable[[int, Any], None] | None = None
    on_parked: Callable[[int], None] | None = None


class OutboxRelay:
    def __init__(
        self,
        outbox: PostgresOutbox,
        producer: Producer,
        encode: Callable[[OutboxRow], bytes],
        settings: RelaySettings,
        control: RoleControl,
        hooks: RelayHooks | None = None,
    ) -> None:
        self._outbox = outbox
        self._producer = producer
        self._encode = encode
        self._settings = settings
        self._control = control
        self._hooks = hooks or RelayHooks()
        self._backlog_at = 0.0
        self.parked: dict[str, OutboxRow] = {}  # stream -> its first row that could not be published

    def run(self) -> int:
        stopper, idle = self._control.stopper, self._control.idle
        try:
            while not stopper.stopping:
                self._control.heartbeat()
                published = retry_transient(self.step, self._control.retry, stopper, what="relay",
                                            on_retry=self._control.retried)
                if published:
                    idle.busy()
                elif idle.expired():
                    break
                elif not stopper.stopping:
                    self._outbox.wait_for_rows(self._settings.wake_fallback_s)  # NOTIFY from ingest, or the timer
        except StopRequested:
            pass
        except Exception as exc:
            if classify(exc) is not Kind.BUG:
                raise
            return stopped_by("relay", exc, "the outbox")
        finally:
            self._producer.flush(10)
            self._outbox.close()
        return 0

    def step(self) -> int:
        """Publish one page of unpublished rows; return how many left the outbox."""
        if not self._outbox.lead():
            return 0  # a standby: another relay holds the lock
        hooks = self._hooks
        if hooks.on_backlog and time.monotonic() - self._backlog_at >= self._settings.backlog_every_s:
            self._backlog_at = time.monotonic()
            hooks.on_backlog(*self._outbox.backlog())
        rows = self._outbox.unpublished(self._settings.batch_size, held_back=sorted(self.parked))
        if not rows:
            return 0
        # 1. produce, in position order; a row that cannot be sent parks its stream (later rows of it wait)
        reports: dict[int, KafkaError | None] = {}
        sent: list[OutboxRow] = []
        for row in rows:
            if row.stream_id in self.parked:
                continue
            if row.missing_event is not None:
                self._park(row, f"its event (global position {row.missing_event}) is not in the events table")
            elif self._produce(row, reports):
                sent.append(row)
        # 2. wait for every delivery report (as long as the producer may still deliver)
        remaining = self._flush()
        for row in sent:
            error = reports.get(row.position)
            if error is not None and error.code() in _TOO_LARGE:
                self._park(row, f"the broker refused it as too large ({error.str()})")
        # 3. delete only what was acknowledged, and per stream only up to its first row that was not
        delivered = {position for position, error in reports.items() if error is None}
        done = acknowledged_prefix(rows, delivered)
        self._outbox.delete_published([r.position for r in done])
        if hooks.on_published:
            hooks.on_published(done)
        errors = [e for e in reports.values() if e is not None and e.code() not in _TOO_LARGE]
        unusable = next((e for e in errors if TopicUnusable.applies(e)), None)
        if unusable is not None:
            raise TopicUnusable(self._settings.topic, unusable)
        if errors or remaining:
            missing = len(sent) - len(reports)
            raise PublishFailed(f"{len(errors) + missing} of {len(sent)} not acknowledged: {errors[:3]}")
        return len(done)

    def _produce(self, row: OutboxRow, reports: dict[int, KafkaError | None]) -> bool:
        def report(err: KafkaError | None, _msg: Any) -> None:
            reports[row.position] = err

        try:
            value = self._encode(row)
        except UnknownEventSchema as exc:
            self._park(row, f"this relay has no writer schema for it ({exc}); a worker that has it publishes it")
            return False
        try:
            self._producer.produce(self._settings.topic, key=row.stream_id.encode(), value=value,
                                   headers=event_headers(row), on_delivery=report)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if TopicUnusable.applies(error):
                raise TopicUnusable(self._settings.topic, error) from None  # type: ignore[arg-type]
            if error is None or error.code() not in _TOO_LARGE:
                raise
            self._park(row, f"{len(value)} bytes encoded, more than the producer's message.max.bytes")
            return False
        self._producer.poll(0)
        return True

    def _flush(self) -> int:
        """Flush until every record is reported or the producer's own timeout has passed; the session that holds
        the lock is kept busy meanwhile (the server ends idle ones) and the loop reported alive."""
        deadline = time.monotonic() + self._settings.delivery_timeout_s
        while True:
            remaining = self._producer.flush(max(0.0, min(_TOUCH_EVERY_S, deadline - time.monotonic())))
            if not remaining or time.monotonic() >= deadline:
                return int(remaining)
            self._control.heartbeat()
            self._outbox.touch()

    def _park(self, row: OutboxRow, reason: str) -> None:
        self.parked.setdefault(row.stream_id, row)
        what = (f"of {row.stream_id}" if row.missing_event is not None
                else f"{row.event_type} v{row.version} of {row.stream_id}, event {row.event_id}")
        log.error("relay: outbox row %d (%s) cannot be published: %s. Its stream waits in the outbox; the other "
                  "streams go on", row.position, what, reason)
        if self._hooks.on_parked:
            self._hooks.on_parked(len(self.parked))
