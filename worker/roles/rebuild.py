"""Rebuilding the read models: from the event store (works after the topic's retention expired) or by
replaying `client.events` from the earliest offset through the projector's own group."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from worker.application.ports import EventLog, ReadModels
from worker.application.projection import ProjectedEvent, Verdict, project
from worker.application.upcasting import DEFAULT_UPCASTERS, Upcasters
from worker.roles.projector import ProjectorProcessor

Progress = Callable[[int, int | None], None]


def rebuild_from_event_store(
    log: EventLog,
    models: ReadModels,
    progress: Progress,
    upcasters: Upcasters = DEFAULT_UPCASTERS,
    page: int = 2000,
) -> int:
    """Truncate, then project every event up to the position settled now (appends under way are waited for:
    paging past a position that a slower transaction commits later would skip its event, and that client's
    next events would be gaps). Later events reach the projector through the topic, past its committed offsets."""
    horizon = log.settled_position()
    models.truncate()
    position, done = 0, 0
    while events := log.read_all(position, page, up_to=horizon):
        with models.session() as session:
            rows: dict[str, Any] = session.load({e.stream_id for e in events})
            changed, history = set(), []
            for stored in events:
                _, payload = upcasters.upcast(stored.event_type, stored.schema_version, stored.payload)
                event = ProjectedEvent(
                    str(stored.metadata.get("event_id")), stored.event_type, stored.stream_id, stored.version, payload
                )
                result = project(rows.get(stored.stream_id), event)
                if result.verdict is not Verdict.APPLIED or result.row is None:
                    raise RuntimeError(f"event store inconsistent at {stored.stream_id} v{stored.version}")
                rows[stored.stream_id] = result.row
                changed.add(stored.stream_id)
                history += result.history
            session.save([rows[c] for c in sorted(changed)], history)
        position = events[-1].global_position or position
        done += len(events)
        progress(done, None)
    return done


def rebuild_from_topic(
    consumer_conf: dict[str, Any],
    topic: str,
    processor: ProjectorProcessor,
    models: ReadModels,
    progress: Progress,
    batch_size: int = 1000,
) -> int:
    """Truncate, then consume every partition from its earliest offset to the end captured now, committing
    as the projector would; the group must be inactive (checked by the caller)."""
    consumer = Consumer({**consumer_conf, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        ends: dict[int, int] = {}
        starts = []
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            ends[partition] = high
            starts.append(TopicPartition(topic, partition, low))
        total = sum(high - tp.offset for tp, high in zip(starts, ends.values(), strict=True))
        models.truncate()
        consumer.assign([tp for tp in starts if tp.offset < ends[tp.partition]])
        done = 0
        remaining = {tp.partition for tp in starts if tp.offset < ends[tp.partition]}
        while remaining:
            batch = [m for m in consumer.consume(batch_size, 1.0) if m.error() is None]
            if not batch:
                continue
            outcome = processor.process(batch)
            if outcome.dead_letters:
                raise RuntimeError(f"rebuild stopped: {outcome.dead_letters[0].error}")
            consumer.commit(asynchronous=False, offsets=_next_offsets(batch))
            done += len(batch)
            progress(done, total)
            for message in batch:
                if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                    remaining.discard(message.partition() or 0)
        return done
    finally:
        consumer.close()


def _next_offsets(batch: list[Any]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in batch:
        last[(m.topic(), m.partition())] = max(last.get((m.topic(), m.partition()), -1), m.offset() + 1)
    return [TopicPartition(t, p, o) for (t, p), o in last.items()]
