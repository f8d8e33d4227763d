"""One benchmark stage in its own process: `python -m tests.benchmarks.stage ROLE CONFIG.json`.

Roles: `ingest`, `relay`, `projector` (the worker's own loops from `worker.bootstrap`, with an IdleClock so they
exit once idle), `raw` and `naive` (the baselines), `peer` (the same job with the `eventsourcing` library),
`e2e` (ingest + relay + projector together, in threads, as
`worker run all` runs them). The result (JSON, with this process's peak RSS) goes to the config's `result` path.

Throughput is timed through the Metrics object bootstrap accepts: its per-batch callbacks (called after the
offsets are committed, or after the published outbox rows are deleted) close each batch; see `common.Span`.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.benchmarks.common import Span, peak_rss_mb

RAW_TABLE = "bench_raw"
NAIVE_TABLE = "bench_naive"
BASELINE_DDL = """
CREATE TABLE IF NOT EXISTS {name} (
    id           bigserial PRIMARY KEY,
    partition    integer NOT NULL,
    "offset"     bigint  NOT NULL,
    record_ids   text    NOT NULL,
    change_type  text    NOT NULL,
    commit_ts_ms bigint  NOT NULL,
    fields       jsonb   NOT NULL
)
"""


def _settings(cfg: dict[str, Any]) -> Any:
    from worker.config import load_settings

    return load_settings(_env_file=None, **cfg["settings"])


def _timed_metrics(span: Span, committed: dict[str, float] | None = None) -> Any:
    """The worker's Metrics, with each per-batch callback also closing a batch of `span`. Given ``committed``, the
    projector's callback (called once its transaction has committed and its offsets are sent) notes the time
    for the event id of every record of the batch: when the read model showed it (the e2e pass's latency)."""
    from worker.adapters.kafka.types import header_dict
    from worker.observability import Metrics

    class TimedMetrics(Metrics):
        def ingest_batch(self, *args: Any) -> None:
            super().ingest_batch(*args)
            batch, outcome = args[-2], args[-1]
            span.end(len(batch), outcome.events, len(outcome.dead_letters))

        def projector_batch(self, *args: Any) -> None:
            super().projector_batch(*args)
            batch, outcome = args[-2], args[-1]
            span.end(len(batch), outcome.applied, len(outcome.dead_letters))
            if committed is not None:
                now = time.time()
                for message in batch:
                    event_id = header_dict(message).get("event_id")
                    if event_id is not None:
                        committed[event_id.decode()] = now

        def relay_published(self, rows: Sequence[Any]) -> None:
            super().relay_published(rows)
            if rows:
                span.end(len(rows), len(rows))

    return TimedMetrics()


def run_role(cfg: dict[str, Any], role: str) -> dict[str, Any]:
    from worker import bootstrap
    from worker.roles.runtime import IdleClock, Stopper

    span = Span()
    settings = _settings(cfg)
    committed: dict[str, float] | None = {} if cfg.get("stamp") and role == "projector" else None
    app = bootstrap.bootstrap(settings, metrics=_timed_metrics(span, committed))
    bootstrap.tune_gc(settings.gc_threshold)  # as `worker run` does
    builders: dict[str, Callable[..., Any]] = {
        "ingest": bootstrap.ingest_loop, "relay": bootstrap.relay, "projector": bootstrap.projector_loop,
    }
    started = time.perf_counter()
    try:
        code = int(builders[role](app, Stopper(), IdleClock(cfg["idle_s"])).run())
    finally:
        app.close()
    stamps = {"committed_at": committed} if committed is not None else {}
    return {"code": code, "wall_s": time.perf_counter() - started, **span.figures(), **stamps}


def run_all(cfg: dict[str, Any]) -> dict[str, Any]:
    """ingest, relay, projector in threads; each stops once idle after the one upstream has stopped."""
    from worker import bootstrap
    from worker.roles.runtime import IdleClock, Stopper

    spans = Span()
    settings = _settings(cfg)
    committed: dict[str, float] | None = {} if cfg.get("stamp") else None
    app = bootstrap.bootstrap(settings, metrics=_timed_metrics(spans, committed))
    bootstrap.tune_gc(settings.gc_threshold)  # as `worker run` does
    stopper = Stopper()
    roles = [("ingest", bootstrap.ingest_loop), ("relay", bootstrap.relay), ("projector", bootstrap.projector_loop)]
    finished = {name: threading.Event() for name, _ in roles}
    codes: dict[str, int] = {}

    def target(index: int) -> None:
        name, build = roles[index]
        after = finished[roles[index - 1][0]].is_set if index else None
        try:
            codes[name] = int(build(app, stopper, IdleClock(cfg["idle_s"], after)).run())
        except Exception:
            logging.getLogger("bench").exception("%s failed", name)
            codes[name] = 1
            stopper.stop()
        finally:
            finished[name].set()

    threads = [threading.Thread(target=target, args=(i,), name=name, daemon=True) for i, (name, _) in enumerate(roles)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    app.close()
    stamps = {"committed_at": committed} if committed is not None else {}
    return {"code": max(codes.values(), default=1), "codes": codes, "wall_s": time.perf_counter() - started,
            **stamps}


# -- baselines ---------------------------------------------------------------------------------------------------


class _BaselineConsumer:
    """A plain confluent_kafka Consumer in its own group: manual commits, the worker's read settings."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        from confluent_kafka import Consumer

        kafka = cfg["settings"]["kafka"]
        self.joined_at: float | None = None
        self.consumer = Consumer({
            "bootstrap.servers": kafka["bootstrap_servers"],
            "group.id": cfg["group"],
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
        })
        self.consumer.subscribe([kafka["cdc_topic"]], on_assign=self._assigned)

    def _assigned(self, _consumer: Any, _partitions: Any) -> None:
        self.joined_at = time.monotonic()

    def idle_for(self, seconds: float, last: float | None) -> bool:
        if self.joined_at is None:
            return False
        return time.monotonic() - max(self.joined_at, last or 0.0) >= seconds


def _row(message: Any, resolver: Any) -> tuple[Any, ...] | None:
    from psycopg.types.json import Jsonb

    from worker.adapters.salesforce.change_event import FieldState
    from worker.adapters.salesforce.errors import ChangeEventParseError
    from worker.adapters.salesforce.event_parser import parse

    try:
        event = parse(message.value() or b"", message.headers(), schemas=resolver)
    except ChangeEventParseError:
        return None
    fields = {name: value.value for name, value in event.fields.items() if value.state is not FieldState.UNCHANGED}
    return (message.partition(), message.offset(), ",".join(event.record_ids), event.change_type.value,
            event.commit_timestamp_ms, Jsonb(fields))


def run_raw(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ceiling: consume a batch, decode it, COPY it into a plain table, commit offsets. No domain."""
    import psycopg
    from confluent_kafka import TopicPartition

    from worker.adapters.salesforce.schemas import SchemaResolver

    kafka = _settings(cfg).kafka  # the worker's batch size and timeout
    resolver = SchemaResolver()
    span = Span()
    source = _BaselineConsumer(cfg)
    consumer = source.consumer
    copy_sql = (f'COPY {RAW_TABLE} (partition, "offset", record_ids, change_type, commit_ts_ms, fields)'
                " FROM STDIN")
    last: float | None = None
    with psycopg.connect(cfg["base_dsn"]) as conn:
        conn.execute(BASELINE_DDL.format(name=RAW_TABLE))
        conn.commit()
        while span.items < cfg["target"]:
            batch = [m for m in consumer.consume(kafka.batch_size, kafka.batch_timeout_s) if m.error() is None]
            if not batch:
                if source.idle_for(cfg["idle_s"], last):
                    break
                continue
            rows = [row for row in (_row(m, resolver) for m in batch) if row is not None]
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            offsets: dict[tuple[str, int], int] = {}
            for m in batch:
                offsets[(m.topic(), m.partition())] = max(offsets.get((m.topic(), m.partition()), 0), m.offset() + 1)
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
            span.end(len(batch), len(rows), len(batch) - len(rows))
            last = time.monotonic()
    consumer.close()
    return {"code": 0, **span.figures()}


def run_naive(cfg: dict[str, Any]) -> dict[str, Any]:
    """The naive consumer: per message, decode, one INSERT in its own transaction, one synchronous commit."""
    import psycopg
    from confluent_kafka import TopicPartition

    from worker.adapters.salesforce.schemas import SchemaResolver

    kafka = _settings(cfg).kafka
    resolver = SchemaResolver()
    span = Span()
    source = _BaselineConsumer(cfg)
    consumer = source.consumer
    insert = (f'INSERT INTO {NAIVE_TABLE} (partition, "offset", record_ids, change_type, commit_ts_ms, fields)'
              " VALUES (%s, %s, %s, %s, %s, %s)")
    last: float | None = None
    with psycopg.connect(cfg["base_dsn"]) as conn:
        conn.execute(BASELINE_DDL.format(name=NAIVE_TABLE))
        conn.commit()
        while span.items < cfg["target"]:
            message = consumer.poll(kafka.batch_timeout_s)
            if message is None or message.error() is not None:
                if source.idle_for(cfg["idle_s"], last):
                    break
                continue
            row = _row(message, resolver)
            if row is not None:
                with conn.transaction():
                    conn.execute(insert, row)
            consumer.commit(offsets=[TopicPartition(message.topic(), message.partition(), message.offset() + 1)],
                            asynchronous=False)
            span.end(1, int(row is not None), int(row is None))
            last = time.monotonic()
    consumer.close()
    return {"code": 0, **span.figures()}


def _peer_app(dsn: str) -> Any:
    """The `eventsourcing` library's Application on its PostgreSQL recorder (its tables in their own database),
    with one aggregate class per client: a Salesforce change is one event carrying the command's values."""
    import uuid
    from urllib.parse import urlsplit

    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    namespace = uuid.UUID("6f1c0c9e-3b5e-4c3e-9a57-0d0b3e1c2a10")

    class PeerClient(Aggregate):
        @staticmethod
        def create_id(client_id: str) -> uuid.UUID:
            return uuid.uuid5(namespace, client_id)

        def __init__(self, client_id: str) -> None:
            self.client_id = client_id
            self.values: dict[str, Any] = {}
            self.deleted = False

        @event("Changed")
        def change(self, command: str, values: dict[str, Any], change: dict[str, Any] | None) -> None:
            self.values.update(values)
            self.deleted = command == "DeleteClient" or (self.deleted and command != "RestoreClient")

    url = urlsplit(dsn)
    app = Application(env={
        "PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": url.path.lstrip("/"),
        "POSTGRES_HOST": url.hostname or "127.0.0.1", "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "worker", "POSTGRES_PASSWORD": url.password or "", "CREATE_TABLE": "y",
    })
    return app, PeerClient


def _peer_changes(command: Any) -> tuple[str, dict[str, Any], dict[str, Any] | None] | None:
    """A command as the peer's event arguments (values JSON-ready); None for commands without one client."""
    client_id = getattr(command, "client_id", None)
    if client_id is None:
        return None
    data = getattr(command, "data", None)
    values = data.model_dump(mode="json") if data is not None else dict(getattr(command, "changes", {}) or {})
    change = command.change.model_dump(mode="json") if getattr(command, "change", None) else None
    return client_id, values, change


def run_peer(cfg: dict[str, Any]) -> dict[str, Any]:
    """The same job with the `eventsourcing` library: the same topic, decoded by the worker's CdcDecoder, one
    aggregate per client; `per_message`: get + save per command (its normal path), `batched`: one save(*aggregates)
    (one transaction) per consumed batch. Offsets committed per batch in both."""
    from confluent_kafka import TopicPartition
    from eventsourcing.application import AggregateNotFoundError

    from worker import bootstrap
    from worker.adapters.salesforce.errors import ChangeEventParseError

    settings = _settings(cfg)
    worker_app = bootstrap.bootstrap(settings)
    decode = bootstrap.decoder(worker_app)
    app, peer_client = _peer_app(cfg["peer_dsn"])
    batched = cfg["mode"] == "batched"
    span = Span()
    source = _BaselineConsumer(cfg)
    consumer = source.consumer
    last: float | None = None

    def aggregate(client_id: str, found: dict[str, Any]) -> Any:
        if client_id in found:
            return found[client_id]
        try:
            agg = app.repository.get(peer_client.create_id(client_id))
        except AggregateNotFoundError:
            agg = peer_client(client_id)
        found[client_id] = agg
        return agg

    try:
        while span.items < cfg["target"]:
            batch = [m for m in consumer.consume(settings.kafka.batch_size, settings.kafka.batch_timeout_s)
                     if m.error() is None]
            if not batch:
                if source.idle_for(cfg["idle_s"], last):
                    break
                continue
            events = skipped = 0
            pending: dict[str, Any] = {}
            for message in batch:
                try:
                    decoded = decode(message)
                except (ChangeEventParseError, ValueError):
                    skipped += 1
                    continue
                for command in decoded.commands:
                    args = _peer_changes(command)
                    if args is None:
                        continue
                    client_id, values, change = args
                    agg = aggregate(client_id, pending if batched else {})
                    agg.change(command=type(command).__name__, values=values, change=change)
                    events += 1
                    if not batched:
                        app.save(agg)
            if batched and pending:
                app.save(*pending.values())
            offsets: dict[tuple[str, int], int] = {}
            for m in batch:
                offsets[(m.topic(), m.partition())] = max(offsets.get((m.topic(), m.partition()), 0), m.offset() + 1)
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
            span.end(len(batch), events, skipped)
            last = time.monotonic()
    finally:
        consumer.close()
        app.close()
        worker_app.close()
    return {"code": 0, "mode": cfg["mode"], **span.figures()}


ROLES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ingest": lambda cfg: run_role(cfg, "ingest"),
    "relay": lambda cfg: run_role(cfg, "relay"),
    "projector": lambda cfg: run_role(cfg, "projector"),
    "e2e": run_all,
    "raw": run_raw,
    "naive": run_naive,
    "peer": run_peer,
}


class _CollectorTime:
    """gc.callbacks hook: the time the garbage collector took, and how many full (oldest generation) passes."""

    def __init__(self) -> None:
        self.seconds, self.full, self._started = 0.0, 0, 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info.get("generation") == 2


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ROLES:
        print(f"usage: python -m tests.benchmarks.stage {{{','.join(ROLES)}}} CONFIG.json", file=sys.stderr)
        return 2
    cfg = json.loads(Path(argv[2]).read_text(encoding="utf-8"))
    for key in [k for k in os.environ if k.startswith("WORKER_")]:
        del os.environ[key]  # the config file is the only source of settings
    logging.basicConfig(level=cfg.get("log_level", "WARNING"),
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    collector = _CollectorTime()
    gc.callbacks.append(collector)
    result = ROLES[argv[1]](cfg)
    gc.callbacks.remove(collector)
    result["gc_s"], result["gc_full"] = collector.seconds, collector.full
    result["rss_mb"] = peak_rss_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole process, start-up included
    Path(cfg["result"]).write_text(json.dumps(result), encoding="utf-8")
    return int(result.get("code", 0))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
