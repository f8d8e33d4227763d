"""The composition root's other half: `Operations` builds, on first use, what the operator commands ask for
(`worker query`, `dlq`, `offsets`, `lag`, ...). The CLI makes one per command and hands it over, so no command
builds a pool, a client or an adapter of its own (the roles' parts are built in `bootstrap`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from worker.adapters.kafka.consumer import consumer_config
from worker.adapters.kafka.producer import make_producer
from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
from worker.adapters.salesforce.schemas import SchemaResolver
from worker.bootstrap import schema_resolver
from worker.config import Settings

if TYPE_CHECKING:  # the operations' parts, imported when first built (a command loads only what it uses)
    from confluent_kafka import Producer

    from worker.adapters.avro import ClientEventCodec
    from worker.adapters.kafka.cluster import KafkaAdmin
    from worker.adapters.kafka.dlq_reader import DeadLetterReader
    from worker.adapters.kafka.dlq_replay import DeadLetterReplayer
    from worker.adapters.postgres.client_queries import PostgresClientQueries
    from worker.adapters.postgres.dlq_audit import ReplayAudit
    from worker.adapters.postgres.migrate import Migration
    from worker.adapters.postgres.read_models import PostgresReadModels
    from worker.adapters.postgres.reconcile_store import PostgresReconcileLedger
    from worker.adapters.salesforce.change_event import ChangeEvent
    from worker.application.queries import QueryBus
    from worker.roles.projector import ProjectorProcessor

T = TypeVar("T")


class Operations:
    """What the operator commands use, each part built on first use and closed by `close()`.

    ``load`` gives the settings (the CLI's reads the environment plus its --bootstrap-servers/--database-url), and
    is called only when a part needs them: `worker cdc parse` reads no settings at all."""

    def __init__(self, load: Callable[[], Settings]) -> None:
        self._load = load
        self._settings: Settings | None = None
        self._parts: dict[str, Any] = {}
        self._closers: list[Callable[[], Any]] = []

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = self._load()
        return self._settings

    def _once(self, name: str, build: Callable[[], T]) -> T:
        if name not in self._parts:
            self._parts[name] = build()
        part: T = self._parts[name]
        return part

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        self._parts.clear()

    # -- PostgreSQL ------------------------------------------------------------------------------------------

    def _pool(self) -> Any:
        def build() -> Any:
            pg = self.settings.postgres
            pool = make_pool(pg.url.get_secret_value(), 2, pg.connect_timeout_s)
            self._closers.append(pool.close)
            return pool

        return self._once("pool", build)

    def read_models(self) -> PostgresReadModels:
        from worker.adapters.postgres.read_models import PostgresReadModels

        return self._once("read_models", lambda: PostgresReadModels(self._pool()))

    def client_queries(self) -> PostgresClientQueries:
        from worker.adapters.postgres.client_queries import PostgresClientQueries

        return self._once("client_queries", lambda: PostgresClientQueries(self.read_models()))

    def query_bus(self) -> QueryBus:
        from worker.application.queries import QueryBus

        return self._once("query_bus", lambda: QueryBus(self.client_queries()))

    def event_log(self) -> PostgresEventStore:
        return self._once("event_store", lambda: PostgresEventStore(self._pool()))

    def reconcile_ledger(self) -> PostgresReconcileLedger:
        from worker.adapters.postgres.reconcile_store import PostgresReconcileLedger

        return self._once("reconcile_ledger", lambda: PostgresReconcileLedger(self._pool()))

    def replay_audit(self) -> ReplayAudit:
        from worker.adapters.postgres.dlq_audit import ReplayAudit

        pg = self.settings.postgres
        return self._once("replay_audit", lambda: ReplayAudit(pg.url.get_secret_value(), pg.connect_timeout_s))

    def migrator(self) -> Callable[[], tuple[list[Migration], list[Migration]]]:
        """Applies the missing migrations; returns (applied now, applied before)."""
        from worker.adapters.postgres.migrate import migrate

        pg = self.settings.postgres
        return partial(migrate, pg.url.get_secret_value())

    # -- Kafka -----------------------------------------------------------------------------------------------

    def database_durability(self) -> dict[str, Any]:
        """The server's durability settings, or why they could not be read (config show still works offline)."""
        import psycopg

        from worker.adapters.postgres.durability import read_durability

        pg = self.settings.postgres
        try:
            verdict = read_durability(pg.url.get_secret_value(), min(pg.connect_timeout_s, 3.0))
        except psycopg.Error as exc:
            text = str(exc).strip()
            reason = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
            return {"durable": None, "settings": {}, "detail": f"durability not checked: {reason}"}
        return {"durable": verdict.durable, "settings": dict(verdict.settings), "detail": verdict.describe()}

    def admin(self) -> KafkaAdmin:
        from worker.adapters.kafka.cluster import KafkaAdmin

        return self._once("admin", lambda: KafkaAdmin(self.settings.kafka))

    def producer(self) -> Producer:
        def build() -> Producer:
            producer = make_producer(self.settings.kafka)
            self._closers.append(lambda: producer.flush(10))
            return producer

        return self._once("producer", build)

    def consumer_config(self, group: str) -> dict[str, Any]:
        return consumer_config(self.settings.kafka, group)

    def dlq_reader(self) -> DeadLetterReader:
        from worker.adapters.kafka.dlq_reader import DeadLetterReader

        return self._once("dlq_reader", lambda: DeadLetterReader(self.settings.kafka))

    def resync_queue(self) -> Any:
        from worker.adapters.postgres.resync_queue import PostgresResyncQueue

        return self._once("resync_queue", lambda: PostgresResyncQueue(self._pool()))

    @staticmethod
    def client_id(raw: str) -> str | None:
        """An Account id in its 18-character form, None when ``raw`` is not one."""
        from worker.adapters.salesforce.errors import ChangeEventParseError
        from worker.adapters.salesforce.ids import normalize_id

        try:
            return normalize_id(raw.strip())
        except ChangeEventParseError:
            return None

    def dlq_replayer(self) -> DeadLetterReplayer:
        from worker.adapters.kafka.dlq_replay import DeadLetterReplayer

        return self._once("dlq_replayer", lambda: DeadLetterReplayer(
            self.producer(), self.replay_audit(), self.settings.dlq_max_replays))

    # -- decoding --------------------------------------------------------------------------------------------

    def event_codec(self) -> ClientEventCodec:
        from worker.adapters.avro import ClientEventCodec

        return self._once("event_codec", ClientEventCodec.from_directory)

    def projector(self) -> ProjectorProcessor:
        from worker.roles.projector import ProjectorProcessor

        return ProjectorProcessor(self.event_codec(), self.read_models())

    def schema_resolver(self, *, configured: bool = True, use_salesforce: bool = False) -> SchemaResolver:
        """The worker's writer schemas; ``configured=False``: the project's folder only (no settings read)."""
        if not configured:
            return SchemaResolver()
        return schema_resolver(self.settings, use_salesforce=use_salesforce)

    @staticmethod
    def parse_cdc(value: bytes, headers: dict[str, bytes], *, fmt: str, schemas: SchemaResolver) -> ChangeEvent:
        """One CDC message as the worker reads it (raises ChangeEventParseError with the reason)."""
        from worker.adapters.salesforce.event_parser import parse

        return parse(value, headers, fmt=fmt, schemas=schemas)

    @staticmethod
    def avro_file_messages(data: bytes) -> Iterator[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
        """(key, value, headers) of each change event of an Avro container file, as Pub/Sub would send it."""
        from worker.adapters.salesforce.encode import pubsub_messages

        return pubsub_messages(data)
