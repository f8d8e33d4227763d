"""Helpers for tests against the real broker and database: settings, producing, running roles, reading back."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from worker.adapters.kafka.admin import create_topics, worker_topics
from worker.config import Settings


def settings_for(env: dict[str, str], **extra: str) -> Settings:
    """Settings as the CLI would read them from ``env`` (and nothing else)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WORKER_")}
    os.environ.update({**env, **extra})
    try:
        return Settings()
    finally:
        for key in {**env, **extra}:
            os.environ.pop(key, None)
        os.environ.update(saved)


def create_worker_topics(settings: Settings) -> None:
    outcomes = create_topics(AdminClient(settings.kafka.client_config()), worker_topics(settings.kafka))
    assert all(o.status in ("created", "exists") for o in outcomes), outcomes


def delete_prefixed(bootstrap: str, prefix: str, timeout_s: float = 30.0) -> list[str]:
    """Delete the topics and consumer groups whose names start with ``prefix`` followed by "." or "-" (what
    a test created under its prefix); return the topics deleted. A failure is reported, never raised: the
    test itself is over."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    ours = (f"{prefix}.", f"{prefix}-")
    try:
        topics = [name for name in admin.list_topics(timeout=timeout_s).topics if name.startswith(ours)]
        for future in (admin.delete_topics(topics, operation_timeout=timeout_s).values() if topics else ()):
            future.result(timeout_s)
        listed = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout_s)
        groups = [g.group_id for g in listed.valid if g.group_id.startswith(ours)]
        for future in (admin.delete_consumer_groups(groups, request_timeout=timeout_s).values() if groups else ()):
            with contextlib.suppress(KafkaException):  # a group still winding down: gone with its last session
                future.result(timeout_s)
    except KafkaException as exc:
        warnings.warn(f"could not delete the topics and groups of {prefix}: {exc}", stacklevel=2)
        return []
    return topics


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]],
            headers: list[tuple[str, bytes]] | None = None) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    count = 0
    for key, value in messages:
        producer.produce(topic, key=key, value=value, headers=headers)
        count += 1
    assert producer.flush(30) == 0
    return count


def consume_all(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every message currently in ``topic`` (up to the high watermarks read at the start), no group commits."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s) for p in partitions}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, high) in ends.items() if high > low])
        remaining = {p for p, (low, high) in ends.items() if high > low}
        messages = []
        import time

        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.5):
                if m.error() is None:
                    messages.append(m)
                    if m.offset() + 1 >= ends[m.partition()][1]:
                        remaining.discard(m.partition())
        assert not remaining, f"could not read to the end of {topic}: partitions {remaining}"
        return messages
    finally:
        consumer.close()


def rows(database_url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(statement, params).fetchall()


def event_count(database_url: str) -> int:
    return rows(database_url, "SELECT count(*) FROM events")[0][0]


@contextmanager
def running(loop: Any) -> Any:
    """Run a role's loop in a thread; the caller stops it through its Stopper. Yields the exit-code holder."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["code"] = loop.run()
        except BaseException as exc:  # surfaced by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        thread.join(60)
        assert not thread.is_alive(), "the loop did not stop within 60 s"
        if "error" in result:
            raise result["error"]


_sequence = iter(range(1, 1_000_000))


def _change(client_id: str) -> Any:
    from worker.application.commands import ChangeMetadata

    n = next(_sequence)
    return ChangeMetadata(
        transaction_key=f"tx-{n}", sequence_number=1, commit_timestamp_ms=1_700_000_000_000 + n * 1000,
        change_type="UPDATE", correlation_id=f"tx-{n}", causation_id=f"test:{n}",
    )


def register(client_id: str, name: str = "Acme") -> Any:
    from worker.application.commands import ClientData, RegisterClient

    return RegisterClient(client_id=client_id, data=ClientData(name=name, active="Yes"), change=_change(client_id))


def change_phone(client_id: str, phone: str) -> Any:
    from worker.application.commands import ChangeClientDetails

    return ChangeClientDetails(client_id=client_id, changes={"phone": phone}, change=_change(client_id))


class StubMessage:
    """Enough of a Kafka message for code paths that only log its coordinates."""

    def topic(self) -> str:
        return "stub"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes | None:
        return b""

    def headers(self) -> list[tuple[str, bytes]]:
        return []

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)

    def error(self) -> None:
        return None
