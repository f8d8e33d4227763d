"""One pipeline under test: its database, topics and groups on the chaos stack, the producer that feeds it the
workload, and the waits on conditions (lag 0 on both groups, an empty outbox, progress), never on the clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.chaos.fleet import Fleet, base_env, run_cli
from tests.chaos.stack import ChaosStack
from tests.chaos.workload import Change
from tests.harness import settings_for
from worker.config import KafkaSettings

POLL_S = 0.5


class Stuck(Exception):
    """A condition was not reached by its deadline: something is lost or stuck."""


@dataclass
class Pipeline:
    name: str
    stack: ChaosStack
    partitions: int
    say: Callable[[str], None]
    dsn: str = ""
    run_id: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def prepare(self, run_id: str) -> None:
        """A fresh database (migrated), fresh topics with ``partitions`` partitions and fresh groups."""
        self.run_id = run_id
        self.dsn = self.stack.create_database(f"chaos_{self.name}")
        self.env = base_env(self.worker_env(self.dsn))
        run_cli(self.env, "migrate")
        run_cli(self.env, "topics", "create")
        self.say(f"{self.name}: database chaos_{self.name}, topics {self.kafka.cdc_topic} (+ events, DLQs), "
                 f"{self.partitions} partition(s)")

    def worker_env(self, dsn: str) -> dict[str, str]:
        prefix = f"chaos-{self.run_id}-{self.name}"
        return {
            "WORKER_KAFKA__BOOTSTRAP_SERVERS": self.stack.bootstrap,
            "WORKER_POSTGRES__URL": dsn,
            "WORKER_POSTGRES__DEAD_PEER_TIMEOUT_S": "5",
            "WORKER_KAFKA__CDC_TOPIC": f"{prefix}.salesforce.cdc.account",
            "WORKER_KAFKA__EVENTS_TOPIC": f"{prefix}.client.events",
            "WORKER_KAFKA__INGEST_GROUP": f"{prefix}-ingest",
            "WORKER_KAFKA__PROJECTOR_GROUP": f"{prefix}-projector",
            "WORKER_KAFKA__PARTITIONS": str(self.partitions),
            "WORKER_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "WORKER_KAFKA__BATCH_TIMEOUT_S": "0.2",
            "WORKER_RETRY__INITIAL_BACKOFF_S": "0.1",
            "WORKER_RETRY__MAX_BACKOFF_S": "2",
            "WORKER_OBSERVABILITY__METRICS_PORT": "0",
            "WORKER_OBSERVABILITY__HEALTH_PORT": "0",
            "WORKER_OBSERVABILITY__LOG_FORMAT": "json",
        }

    @property
    def kafka(self) -> KafkaSettings:
        return settings_for({k: v for k, v in self.env.items() if k.startswith("WORKER_")}).kafka

    # -- input ---------------------------------------------------------------------------------------------

    def produce(self, changes: Sequence[Change], gate: Callable[[int], None] | None = None,
                rate: float = 0.0) -> int:
        """Every change to its partition (idempotent producer: a broker restart neither loses nor doubles
        one); ``gate(i)`` may hold message i back, ``rate`` paces (messages/s, 0: as fast as it goes)."""
        producer = Producer({"bootstrap.servers": self.stack.bootstrap, "enable.idempotence": True,
                             "linger.ms": 5, "message.timeout.ms": 600_000, "log_level": 0})
        failed: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(str(err))

        topic, started = self.kafka.cdc_topic, time.monotonic()
        for i, change in enumerate(changes):
            if gate is not None:
                gate(i)
            if rate and i % 50 == 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing the input, not waiting for an outcome
            while True:
                try:
                    producer.produce(topic, change.value, change.key, partition=change.partition(self.partitions),
                                     headers=change.headers, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        while producer.flush(5) > 0:
            pass  # every message is delivered or failed by message.timeout.ms
        if failed:
            raise Stuck(f"{self.name}: {len(failed)} changes were not delivered to the broker: {failed[0]}")
        return len(changes)

    # -- conditions ------------------------------------------------------------------------------------------

    def events_written(self) -> int:
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            row = conn.execute("SELECT pg_sequence_last_value('events_global_position_seq')").fetchone()
            return int(row[0] or 0) if row else 0

    def progressed(self, since: int, deadline_s: float, fleet: Fleet | None = None) -> int:
        """Wait until ingest wrote events past ``since``; returns the new mark."""
        found = wait(lambda: max(self.events_written() - since, 0) and self.events_written(), deadline_s,
                     f"{self.name}: ingest progress past event {since}", fleet)
        return int(found)

    def converged(self, deadline_s: float, fleet: Fleet | None = None) -> str:
        """Ingest lag 0, then an empty outbox, then projector lag 0 (in that order, so each holds for what
        came before it); the figures on timeout."""
        kafka = self.kafka

        def state() -> tuple[int, int, int]:
            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                outbox = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])  # type: ignore[index]
            return (lag(kafka.bootstrap_servers, kafka.ingest_group, kafka.cdc_topic), outbox,
                    lag(kafka.bootstrap_servers, kafka.projector_group, kafka.events_topic))

        def done() -> bool:
            ingest = lag(kafka.bootstrap_servers, kafka.ingest_group, kafka.cdc_topic)
            if ingest:
                return False
            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                if conn.execute("SELECT count(*) FROM outbox").fetchone()[0]:  # type: ignore[index]
                    return False
            return not lag(kafka.bootstrap_servers, kafka.projector_group, kafka.events_topic)

        started = time.monotonic()
        try:
            wait(done, deadline_s, f"{self.name}: lag 0 on both groups and an empty outbox", fleet)
        except Stuck as exc:
            raise Stuck(f"{exc}; ingest lag, outbox rows, projector lag = {safely(state)}") from None
        return f"converged in {time.monotonic() - started:.1f}s"


def lag(bootstrap: str, group: str, topic: str) -> int:
    """End offsets minus the group's committed offsets, summed over the partitions, read by a fresh client: the
    process-wide admin client of worker.adapters.kafka.groups, used across the broker's restart, once kept timing
    out on a group's offsets for minutes (not reproduced in isolation)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "log_level": 0})
    try:
        parts = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        total = 0
        for tp in consumer.committed(parts, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            total += high - (tp.offset if tp.offset >= 0 else low)
        return total
    finally:
        consumer.close()


def wait(condition: Callable[[], Any], deadline_s: float, what: str, fleet: Fleet | None = None) -> Any:
    """Poll ``condition`` (a broker or database that is down is "not yet"); Stuck at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        if fleet is not None:
            fleet.check()
        value = safely(condition)
        if value and not isinstance(value, Exception):
            return value
        if time.monotonic() >= deadline:
            last = f" (last: {type(value).__name__}: {value})" if isinstance(value, Exception) else ""
            raise Stuck(f"timed out after {deadline_s:.0f}s waiting for {what}{last}")
        time.sleep(POLL_S)


def safely(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # the servers are being restarted under us: that is the point
        return exc


class Gate:
    """Keeps the producer at most half a step ahead of the faults: each fault lands while input still flows."""

    def __init__(self, total: int, steps: int) -> None:
        self._total, self._steps, self._done = total, steps, 0
        self.produced = 0
        self._cond = threading.Condition()

    def __call__(self, i: int) -> None:
        with self._cond:
            while i >= self._total * (self._done + 1.5) / (self._steps + 1) and self._done < self._steps:
                self._cond.wait(1.0)
            self.produced = i + 1

    def step_due(self, j: int) -> bool:
        return self.produced >= self._total * (j + 1) / (self._steps + 1)

    def step_done(self) -> None:
        with self._cond:
            self._done += 1
            self._cond.notify_all()
