"""The composition root: with `bootstrap_operations` (what the operator commands use), the only place that names
concrete adapters. `bootstrap()` builds what the roles run on (`worker run`). Tests call it with fakes."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from worker import __version__
from worker.adapters.kafka.consumer import BatchConsumer, ExpiredInput, consumer_config
from worker.adapters.kafka.dlq import DeadLetterPublisher
from worker.adapters.kafka.producer import make_producer
from worker.adapters.postgres.durability import read_durability
from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
from worker.adapters.postgres.outbox import PostgresOutbox
from worker.adapters.postgres.reconcile_store import PostgresReadModelView, PostgresReconcileLedger
from worker.adapters.postgres.resync_queue import PostgresResyncQueue
from worker.adapters.salesforce.decoder import CdcDecoder
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.adapters.salesforce.mapping import FieldMapping
from worker.adapters.salesforce.schemas import SchemaResolver, first_of, registry_fetch
from worker.application.bus import CommandBus, default_middleware
from worker.application.ports import ClientSource
from worker.application.reconcile import ReconcilePacing, Reconciler
from worker.application.resync import Resynchronizer, ResyncPolicy
from worker.application.unit_of_work import AggregateCache, ClientBatch
from worker.config import Settings
from worker.domain import StatusRule
from worker.health import DurabilityGate, Health, Heartbeat, assignment_check, database_check
from worker.observability import Metrics
from worker.reconcile_metrics import ReconcileMetrics
from worker.resync_metrics import ResyncMetrics
from worker.retention import RetentionCliff
from worker.roles.ingest import IngestProcessor
from worker.roles.loop import ConsumerLoop
from worker.roles.relay import OutboxRelay, RelayHooks, RelaySettings
from worker.roles.resync import DisabledResync, ResyncHooks, ResyncPacing, ResyncRole
from worker.roles.runtime import IdleClock, RoleControl, Stopper

STATS_INTERVAL_MS = 5000


@dataclass
class App:
    settings: Settings
    store: PostgresEventStore
    bus: CommandBus
    rule: StatusRule
    mapping: FieldMapping
    schemas: SchemaResolver
    metrics: Metrics
    client_source: ClientSource | None = None
    health: Health = field(default_factory=Health)
    aggregates: AggregateCache | None = None
    pool: Any = None
    reconcile_metrics: ReconcileMetrics | None = None
    closers: list[Callable[[], Any]] = field(default_factory=list)

    def new_batch(self) -> ClientBatch:
        return ClientBatch(self.store, snapshot_interval=self.settings.snapshot_interval, worker_version=__version__,
                           cache=self.aggregates)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()


def bootstrap(settings: Settings, *, client_source: ClientSource | None = None, metrics: Metrics | None = None) -> App:
    pg = settings.postgres
    metrics = metrics or Metrics()
    durability = DurabilityGate(partial(read_durability, pg.url.get_secret_value(), pg.connect_timeout_s),
                                pg.require_durable, metrics.database_durable)
    durability.start()  # before anything opens: a refusal leaves nothing to close
    pool = make_pool(pg.url.get_secret_value(), pg.pool_size, pg.connect_timeout_s)
    source = client_source
    fetch_schema: Callable[[str], str | None] | None = None
    if source is None and settings.salesforce.auth.value != "none":
        from worker.adapters.salesforce.api import SalesforceApi
        from worker.adapters.salesforce.gateway import SalesforceClientSource

        api = SalesforceApi(settings.salesforce, settings.retry, on_call=metrics.salesforce_call)
        metrics.watch_circuit("salesforce", lambda: api.circuit_state)
        mapping = FieldMapping.from_overrides(settings.domain.field_mapping)
        source = SalesforceClientSource(api, mapping)
        fetch_schema = api.fetch_event_schema
    rule = StatusRule(
        prospect_types=settings.domain.prospect_types,
        active_values=settings.domain.active_values,
        inactive_values=settings.domain.inactive_values,
    )
    app = App(
        settings=settings,
        store=PostgresEventStore(pool),
        bus=CommandBus(middleware=[metrics.traced, *default_middleware(metrics.record_command)]),
        rule=rule,
        mapping=FieldMapping.from_overrides(settings.domain.field_mapping),
        schemas=schema_resolver(settings, fetch_schema),
        metrics=metrics,
        client_source=source,
        pool=pool,
        aggregates=(AggregateCache(settings.aggregate_cache_size, settings.aggregate_cache_mib)
                    if settings.aggregate_cache_size else None),
    )
    app.closers.append(pool.close)
    app.health.readiness("database", database_check(pool))
    app.health.readiness("database durability", durability.check)
    return app


def tune_gc(threshold: int) -> None:
    """Fewer young-generation collections (each one also ages objects toward the full collections that walk the
    whole aggregate cache), and what start-up built (modules, schemas, settings) left out of every collection."""
    if threshold <= 0:
        return
    _, middle, old = gc.get_threshold()
    gc.set_threshold(threshold, middle, old)
    gc.freeze()


def schema_resolver(settings: Settings, fetch_schema: Callable[[str], str | None] | None = None, *,
                    use_salesforce: bool = False) -> SchemaResolver:
    """Writer schemas: the project's folder, then the Schema Registry, then Salesforce (`fetch_schema`, or with
    ``use_salesforce`` a client of the configured org)."""
    if fetch_schema is None and use_salesforce and settings.salesforce.auth.value != "none":
        from worker.adapters.salesforce.api import SalesforceApi

        fetch_schema = SalesforceApi(settings.salesforce, settings.retry).fetch_event_schema
    return SchemaResolver(fetch=first_of(
        registry_fetch(settings.kafka.schema_registry_url) if settings.kafka.schema_registry_url else None,
        fetch_schema,
    ))


def decoder(app: App) -> CdcDecoder:
    own_client = app.settings.salesforce.own_client_id if app.settings.features.echo_suppression else None
    return CdcDecoder(app.schemas, app.mapping, cdc_format=app.settings.kafka.cdc_format, own_client_id=own_client)


def ingest_loop(app: App, stopper: Stopper, idle: IdleClock) -> ConsumerLoop:
    s = app.settings
    processor = IngestProcessor(
        decoder(app), (ChangeEventParseError,), app.bus, app.new_batch, app.rule,
        conflict_retries=s.retry.conflict_retries,
    )
    consumer = _consumer(app, s.kafka.ingest_group, s.kafka.cdc_topic, on_expired=retention_cliff(app))
    producer = make_producer(s.kafka)
    dlq = DeadLetterPublisher(producer, s.kafka.ingest_group, s.kafka.dlq_suffix)
    return ConsumerLoop("ingest", consumer, processor.process, dlq, s.kafka, _control(app, "ingest", stopper, idle),
                        on_batch=partial(app.metrics.ingest_batch, s.kafka.cdc_topic), pipelined=processor)


def resync_queue(app: App) -> PostgresResyncQueue:
    return PostgresResyncQueue(app.pool)


def resync_disabled_reason(settings: Settings, can_read_salesforce: object) -> str | None:
    """Why the resync role cannot run (``can_read_salesforce``: a ClientSource, or whether one is configured)."""
    if not settings.features.resync_enabled:
        return "WORKER_FEATURES__RESYNC_ENABLED=false"
    if not can_read_salesforce:
        return "no Salesforce credentials (WORKER_SALESFORCE__AUTH=none)"
    return None


def resync_role(app: App, stopper: Stopper, idle: IdleClock) -> ResyncRole | DisabledResync:
    """The resync role, or its disabled stand-in that says why (and /readyz reports it)."""
    s = app.settings
    queue = resync_queue(app)
    why = resync_disabled_reason(s, app.client_source)
    resync_metrics = ResyncMetrics(app.metrics.provider.get_meter("salesforce-cdc-worker.resync"))
    if why is not None or app.client_source is None:
        resync_metrics.enabled(False)
        disabled = DisabledResync(why or "disabled", stopper, idle,
                                  dirty=lambda: queue.status(s.resync.max_attempts, 0).backlog)
        app.health.readiness("resync", disabled.ready)
        return disabled
    r = s.resync
    policy = ResyncPolicy(batch_size=r.batch_size, lease_s=r.lease_s, max_attempts=r.max_attempts,
                          backoff_s=r.backoff_s, failing_retry_s=r.failing_retry_s,
                          conflict_retries=s.retry.conflict_retries)
    source = app.client_source
    resync = Resynchronizer(queue, source, app.new_batch, app.rule, worker_id=worker_id(s), policy=policy)
    role = ResyncRole(
        resync, stopper, idle,
        ResyncPacing(poll_interval_s=r.poll_interval_s, scan_poll_s=r.scan_poll_s,
                     initial_backoff_s=s.retry.initial_backoff_s, max_backoff_s=s.retry.max_backoff_s),
        ResyncHooks(heartbeat=_heartbeat(app, "resync"), on_step=resync_metrics.step,
                    status=lambda: queue.status(r.max_attempts, 0),
                    on_status=partial(_with_reconcile_status, app, resync_metrics.status),
                    usage=source.usage, on_usage=resync_metrics.usage),
    )
    app.health.readiness("resync", role.ready)
    return role


def backfill_resync(app: App) -> Resynchronizer:
    """The resync role's Resynchronizer for `worker backfill`, under a claim name that a rerun on the same host
    takes over at once (a killed backfill resumes after its last page, not after the lease)."""
    s, r = app.settings, app.settings.resync
    if app.client_source is None:
        raise ValueError(resync_disabled_reason(s, None) or "no Salesforce client")
    policy = ResyncPolicy(batch_size=r.batch_size, lease_s=r.lease_s, max_attempts=r.max_attempts,
                          backoff_s=r.backoff_s, failing_retry_s=r.failing_retry_s,
                          conflict_retries=s.retry.conflict_retries)
    name = f"backfill@{s.kafka.group_instance_id or socket.gethostname()}"
    return Resynchronizer(resync_queue(app), app.client_source, app.new_batch, app.rule, worker_id=name,
                          policy=policy)


def reconcile_ledger(app: App) -> PostgresReconcileLedger:
    return PostgresReconcileLedger(app.pool)


def reconciler(app: App, pacing: ReconcilePacing, progress: Callable[[int], None]) -> Reconciler:
    if app.client_source is None:
        raise ValueError(resync_disabled_reason(app.settings, None) or "no Salesforce client")
    source: Any = app.client_source  # the Salesforce gateway: a ClientSource that also lists changed records
    queue = resync_queue(app)
    return Reconciler(source, source, PostgresReadModelView(app.pool), app.rule, queue.seen_extra_fields,
                      pacing, progress)


def _with_reconcile_status(app: App, then: Callable[[Any], None], status: Any) -> None:
    """The resync role's status step also exports the last reconcile (a CronJob's process is gone)."""
    then(status)
    ledger = reconcile_ledger(app)
    pending = ledger.pending()
    reconcile_metrics(app).observe(ledger.last_run(), pending.count if pending else 0)


def worker_id(settings: Settings) -> str:
    """Who holds a claim: the static-membership id when set (the pod name), else host and process."""
    return settings.kafka.group_instance_id or f"{socket.gethostname()}:{os.getpid()}"


def relay(app: App, stopper: Stopper, idle: IdleClock) -> OutboxRelay:
    from worker.adapters.avro import ClientEventCodec

    s = app.settings
    codec = ClientEventCodec.from_directory()
    return OutboxRelay(
        PostgresOutbox(s.postgres.url.get_secret_value(), s.postgres.connect_timeout_s, s.postgres.dead_peer_timeout_s),
        make_producer(s.kafka),
        codec.encode_row,
        RelaySettings(s.kafka.events_topic, batch_size=s.kafka.batch_size),
        _control(app, "relay", stopper, idle),
        RelayHooks(on_published=app.metrics.relay_published, on_backlog=app.metrics.outbox_backlog,
                   on_parked=app.metrics.outbox_parked),
    )


def read_models(app: App) -> Any:
    from worker.adapters.postgres.read_models import PostgresReadModels

    pg = app.settings.postgres
    pool = make_pool(pg.url.get_secret_value(), pg.pool_size, pg.connect_timeout_s)
    app.closers.append(pool.close)
    return PostgresReadModels(pool)


def projector_loop(app: App, stopper: Stopper, idle: IdleClock) -> ConsumerLoop:
    from worker.adapters.avro import ClientEventCodec
    from worker.roles.projector import ProjectorProcessor

    s = app.settings
    processor = ProjectorProcessor(ClientEventCodec.from_directory(), read_models(app))
    consumer = _consumer(app, s.kafka.projector_group, s.kafka.events_topic)
    dlq = DeadLetterPublisher(make_producer(s.kafka), s.kafka.projector_group, s.kafka.dlq_suffix)

    return ConsumerLoop("projector", consumer, processor.process, dlq, s.kafka,
                        _control(app, "projector", stopper, idle),
                        on_batch=partial(app.metrics.projector_batch, s.kafka.events_topic))


def retention_cliff(app: App) -> RetentionCliff:
    ledger = reconcile_ledger(app)
    return RetentionCliff(ledger.request, ledger.last_applied_commits, reconcile_metrics(app).lost)


def reconcile_metrics(app: App) -> ReconcileMetrics:
    """One per process (its instruments are registered once)."""
    if app.reconcile_metrics is None:
        app.reconcile_metrics = ReconcileMetrics(app.metrics.provider.get_meter("salesforce-cdc-worker.reconcile"))
    return app.reconcile_metrics


def _consumer(app: App, group: str, topic: str,
              on_expired: Callable[[list[ExpiredInput]], None] | None = None) -> BatchConsumer:
    """A group consumer whose librdkafka statistics feed the lag gauge, and whose assignment is a readiness
    check of the process."""
    conf = consumer_config(app.settings.kafka, group, **{
        "statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": app.metrics.consumer_stats(group)})
    consumer = BatchConsumer(conf, [topic], on_expired=on_expired, linger_s=app.settings.kafka.batch_linger_s)
    app.health.readiness(f"{group} partitions", assignment_check(consumer))
    return consumer


def _control(app: App, role: str, stopper: Stopper, idle: IdleClock) -> RoleControl:
    return RoleControl(stopper, idle, app.settings.retry, heartbeat=_heartbeat(app, role),
                       on_retry=app.metrics.retried(role))


def _heartbeat(app: App, role: str) -> Callable[[], None]:
    """Liveness: the role's loop turned within max.poll.interval.ms (after that Kafka drops it anyway)."""
    beat = Heartbeat(app.settings.kafka.max_poll_interval_ms / 1000)
    app.health.liveness(role, beat.check)
    return beat.beat


@contextmanager
def long_command(settings: Settings, as_json: bool) -> Iterator[App]:
    """A long-running operator command (backfill, reconcile): logs configured (JSON lines with ``--json``), the
    worker's parts built, and closed afterwards."""
    from worker import logs

    obs = settings.observability
    logs.configure(obs.log_level, "json" if as_json else obs.log_format)
    app = bootstrap(settings)
    try:
        yield app
    finally:
        app.close()
