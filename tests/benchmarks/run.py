"""The benchmark: `python -m tests.benchmarks.run [--out PATH]` (`make bench [OUT=file.json]`).

Needs KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (a role that may CREATE DATABASE). Every run uses its own topics
(`bench-<id>.`), consumer groups and databases (`bench_<id>_…`), and removes them at the end.

0. The broker warmed up: BENCH_WARMUP_N messages (default N; 0 skips it) produced to a topic of their own and read
   back, twice, then the topic deleted. A broker the bench has just started runs its JVM's code interpreted for a
   while and takes a CPU from the passes (0.70 of two CPUs in one e2e pass): its figures measured the broker's
   start, not the worker.
1. The workload (`workload.py`): BENCH_N messages (50 000) over BENCH_CLIENTS records (20 000, at most N/10),
   seed BENCH_SEED (42), format BENCH_FORMAT (pubsub | cometd), on a 4-partition topic, produced before timing.
2. Stages, each in its own process (`stage.py`), steady-state rate and peak RSS: raw ceiling, ingest, naive
   (over min(N, BENCH_NAIVE_N=20 000) messages), relay, projector; then the database size per million events.
3. End-to-end latency: a second, smaller workload (BENCH_E2E_N, default about 30 s of feed) produced at half the
   measured ingest rate (or at BENCH_E2E_RATE messages/s: one rate for runs to compare) while ingest + relay +
   projector run together; latency = the time the projector's transaction holding the last event of a change had
   committed (noted by the projector stage per event) - the change's Kafka timestamp, for every change fed.
   The median per hop (ingest commit, relay publish, projector transaction, its commit) comes from the database's
   recorded_at / projected_at of each client's last change and the relay's produce times.
   The CPUs each kind of process used during the feed (the roles, Kafka, PostgreSQL, this bench) are sampled from
   /proc once a second (`cpu_during_feed`): the pass shares the host with all of them; PostgreSQL's also by the
   session or background process it went to (`postgresql_cpu_by_backend`).
4. Aggregate load time of a 10 000-event stream, with snapshots every 100 events and with none.
5. The same workload at BENCH_SCALE x N (5; 1 skips it): raw, ingest, relay, projector, database size.
6. Convergence (`converge.py`): `worker backfill` and a full `worker reconcile` of BENCH_CONVERGE_N Accounts
   (100 000; 0 skips it) on the tests' fake Salesforce, as records per second beside the ingest rate.

Other knobs: BENCH_IDLE_S (2.0, idle time before a stage exits), BENCH_BATCH_SIZE and BENCH_BATCH_TIMEOUT_S (the
worker's kafka.batch_size / batch_timeout_s; its defaults otherwise), BENCH_E2E_MODE (threads: the three roles in
one process, as `worker run all`; processes: one process per role, as deployed),
BENCH_SETTINGS (JSON laid over the stages' worker settings, e.g. '{"aggregate_cache_size": 0}'),
BENCH_KEEP=1 (keep databases, topics and groups for inspection; `--cleanup RUN_ID` removes them later),
BENCH_LOG_LEVEL (WARNING, the stages' log files),
BENCH_PROFILE=ingest,projector,... (those stages under py-spy, if installed; see `profiled`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.benchmarks.common import log, percentile, with_database
from tests.benchmarks.durable import durable_postgres, server_settings
from tests.benchmarks.workload import Workload, client_id

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
SNAPSHOT_EVENTS = 10_000
E2E_WARMUP = 20


@dataclass(frozen=True)
class Config:
    bootstrap: str
    database_url: str
    n: int
    clients: int
    seed: int
    fmt: str
    scale: int
    scale_wide: int
    naive_n: int
    peer: bool
    e2e_n: int | None
    warmup_n: int
    e2e_rate: float | None
    idle_s: float
    batch_size: int | None
    batch_timeout_s: float | None
    e2e_mode: str
    worker_settings: dict[str, Any]
    keep: bool
    log_level: str
    profile: tuple[str, ...]

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ
        return cls(
            bootstrap=env.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            database_url=env.get("DATABASE_URL", "postgresql://worker@127.0.0.1:15432/worker"),
            n=int(env.get("BENCH_N", "50000")),
            clients=int(env.get("BENCH_CLIENTS", "20000")),
            seed=int(env.get("BENCH_SEED", "42")),
            fmt=env.get("BENCH_FORMAT", "pubsub").lower().replace("pubsub-avro", "pubsub"),
            scale=int(env.get("BENCH_SCALE", "5")),
            scale_wide=int(env.get("BENCH_SCALE_WIDE", "10")),
            naive_n=int(env.get("BENCH_NAIVE_N", "20000")),
            peer=env.get("BENCH_PEER", "1") not in ("", "0"),
            e2e_n=int(env["BENCH_E2E_N"]) if env.get("BENCH_E2E_N") else None,
            warmup_n=int(env.get("BENCH_WARMUP_N") or env.get("BENCH_N", "50000")),
            e2e_rate=float(env["BENCH_E2E_RATE"]) if env.get("BENCH_E2E_RATE") else None,
            idle_s=float(env.get("BENCH_IDLE_S", "2.0")),
            batch_size=int(env["BENCH_BATCH_SIZE"]) if env.get("BENCH_BATCH_SIZE") else None,
            batch_timeout_s=float(env["BENCH_BATCH_TIMEOUT_S"]) if env.get("BENCH_BATCH_TIMEOUT_S") else None,
            e2e_mode=env.get("BENCH_E2E_MODE", "processes"),
            worker_settings=json.loads(env.get("BENCH_SETTINGS") or "{}"),
            keep=env.get("BENCH_KEEP", "") not in ("", "0"),
            log_level=env.get("BENCH_LOG_LEVEL", "WARNING"),
            profile=tuple(r.strip() for r in env.get("BENCH_PROFILE", "").split(",") if r.strip()),
        )

    def clients_for(self, n: int) -> int:
        return max(1, min(self.clients, n // 10))


@dataclass
class Resources:
    """Everything a run creates, removed at the end (unless BENCH_KEEP)."""

    cfg: Config
    run_id: str
    workdir: Path
    databases: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def database(self, suffix: str, migrated: bool = True) -> tuple[str, int]:
        """A fresh database; its URL and its size right after the migrations."""
        from worker.adapters.postgres.migrate import migrate

        name = f"bench_{self.run_id}_{suffix}"
        with psycopg.connect(self.cfg.database_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        url = with_database(self.cfg.database_url, name)
        if migrated:
            migrate(url)
        return url, database_size(url)

    def worker_settings(self, label: str, dsn: str) -> dict[str, Any]:
        prefix = f"bench-{self.run_id}.{label}."
        kafka: dict[str, Any] = {
            "bootstrap_servers": self.cfg.bootstrap,
            "cdc_topic": f"{prefix}salesforce.cdc.account",
            "events_topic": f"{prefix}client.events",
            "ingest_group": f"{prefix}ingest",
            "projector_group": f"{prefix}projector",
            "partitions": 4,
            "client_id": "salesforce-cdc-worker-bench",
        }
        if self.cfg.batch_size:
            kafka["batch_size"] = self.cfg.batch_size
        if self.cfg.batch_timeout_s:
            kafka["batch_timeout_s"] = self.cfg.batch_timeout_s
        self.groups += [kafka["ingest_group"], kafka["projector_group"], f"{prefix}raw", f"{prefix}naive"]
        return merged({
            "kafka": kafka,
            "postgres": {"url": dsn},
            "salesforce": {"auth": "none"},
            "observability": {"metrics_port": 0, "health_port": 0, "log_level": self.cfg.log_level},
        }, self.cfg.worker_settings)

    def create_topics(self, overrides: dict[str, Any]) -> Any:
        from worker.adapters.kafka.admin import create_topics, worker_topics
        from worker.config import load_settings

        settings = load_settings(_env_file=None, **overrides)
        specs = worker_topics(settings.kafka)
        self.topics += [s.name for s in specs]
        outcomes = create_topics(AdminClient({"bootstrap.servers": self.cfg.bootstrap, "log_level": 4}), specs)
        bad = [o for o in outcomes if o.status not in ("created", "exists")]
        if bad:
            raise RuntimeError(f"could not create the topics: {bad}")
        return settings

    def cleanup(self, keep_logs: bool = False) -> None:
        if self.cfg.keep:
            log(f"BENCH_KEEP: kept databases {self.databases}, topics {self.topics}")
            return
        admin = AdminClient({"bootstrap.servers": self.cfg.bootstrap, "log_level": 4})
        if self.topics:
            for name, future in admin.delete_topics(self.topics, operation_timeout=30).items():
                try:
                    future.result()
                except Exception as exc:
                    log(f"could not delete topic {name}: {exc}")
        if self.groups:
            try:
                for future in admin.delete_consumer_groups(self.groups, request_timeout=30).values():
                    with contextlib.suppress(Exception):  # a group never joined does not exist
                        future.result()
            except Exception as exc:
                log(f"could not delete consumer groups: {exc}")
        with psycopg.connect(self.cfg.database_url, autocommit=True) as conn:
            for name in self.databases:
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except psycopg.Error as exc:
                    log(f"could not drop database {name}: {exc}")
        if keep_logs:
            log(f"stage logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        log(f"removed {len(self.databases)} database(s), {len(self.topics)} topic(s)")


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, nested dicts merged."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# -- helpers -----------------------------------------------------------------------------------------------------


def warm_broker(res: Resources) -> dict[str, Any] | None:
    """Twice: produce BENCH_WARMUP_N messages to a topic of this run's, read them back, delete the topic; the
    rates of both rounds are logged (a cold broker's first is the slower)."""
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    cfg = res.cfg
    if cfg.warmup_n <= 0:
        return None
    admin = AdminClient({"bootstrap.servers": cfg.bootstrap, "log_level": 4})
    rounds = []
    read = [0]

    def count(_m: Any) -> None:
        read[0] += 1

    for n in range(2):
        topic = f"bench-{res.run_id}.warmup{n}"
        for future in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).values():
            future.result()
        res.topics.append(topic)
        try:
            workload = Workload(cfg.warmup_n, cfg.clients_for(cfg.warmup_n), cfg.seed + 1 + n, cfg.fmt)
            started = time.perf_counter()
            produced = produce_all(cfg.bootstrap, topic, workload.messages())
            middle = time.perf_counter()
            read[0] = 0
            read_topic(cfg.bootstrap, topic, count, 120.0, f"warmup{n}")
            ended = time.perf_counter()
            rounds.append({"produced_per_s": round(produced / (middle - started)),
                           "read_per_s": round(read[0] / (ended - middle)), "read": read[0]})
        finally:
            for future in admin.delete_topics([topic], operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()
            res.topics.remove(topic)
    log("broker warm-up: " + "; ".join(
        f"round {i + 1}: produced {r['produced_per_s']:,}/s, read {r['read_per_s']:,}/s"
        for i, r in enumerate(rounds)))
    return {"messages": cfg.warmup_n, "rounds": rounds}


def database_size(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]


def scalar(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql, params).fetchone()
        return row[0] if row else None


def topic_count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-watermarks-{uuid.uuid4().hex[:8]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, each: Callable[[Any], None], timeout_s: float, what: str) -> None:
    """Call ``each`` on every record of ``topic`` as it is now (assign + seek, no group offsets committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{what}-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        remaining = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in remaining])
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                each(m)
                if m.offset() + 1 >= ends[m.partition()][1]:
                    remaining.discard(m.partition())
    finally:
        consumer.close()


def dead_letter_reasons(bootstrap: str, topic: str, timeout_s: float = 20.0) -> dict[str, int]:
    """`stage: exception class` -> count, over every record of a dead-letter topic."""
    from worker.adapters.kafka.dlq import H_CLASS, H_STAGE

    reasons: Counter[str] = Counter()

    def count(m: Any) -> None:
        headers = {k: (v or b"").decode(errors="replace") for k, v in (m.headers() or [])}
        reasons[f"{headers.get(H_STAGE, '?')}: {headers.get(H_CLASS, '?')}"] += 1

    read_topic(bootstrap, topic, count, timeout_s, "dlq")
    return dict(reasons)


def produce_all(bootstrap: str, topic: str, messages: Iterable[tuple[bytes, bytes, list[tuple[str, bytes]]]]) -> int:
    producer = Producer({
        "bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4",
        "batch.num.messages": 10_000, "queue.buffering.max.messages": 200_000,
    })
    failures: list[Any] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(err)

    count = 0
    for key, value, headers in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise RuntimeError(f"{remaining + len(failures)} of {count} messages not produced: {failures[:3]}")
    return count


def profiled(command: list[str], res: Resources, name: str) -> list[str]:
    """BENCH_PROFILE=role[,role] (or label-role, e.g. x5-ingest): the stage under py-spy (installed separately:
    `pip install py-spy`), wall-clock collapsed stacks per thread (idle included, so database and broker waits
    show) kept in BENCH_PROFILE_DIR (default /tmp/bench-profiles). Profiling slows the stage down."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        log("BENCH_PROFILE: py-spy is not installed (pip install py-spy); running without it")
        return command
    folder = Path(os.environ.get("BENCH_PROFILE_DIR", "/tmp/bench-profiles"))
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{res.run_id}-{name}.txt"
    log(f"profiling {name} into {out}")
    return [py_spy, "record", "--format", "raw", "--rate", "250", "--idle", "--threads", "--output", str(out), "--",
            *command]


class Stage:
    """One stage process; its log (stderr + stdout) goes to the work folder."""

    def __init__(self, res: Resources, role: str, label: str, cfg: dict[str, Any]) -> None:
        self.role, self.label = role, label
        self.log_path = res.workdir / f"{label}-{role}.log"
        self.result_path = res.workdir / f"{label}-{role}.json"
        config_path = res.workdir / f"{label}-{role}.config.json"
        config_path.write_text(json.dumps({**cfg, "result": str(self.result_path), "log_level": res.cfg.log_level}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
        env["PGAPPNAME"] = f"bench-{role}"  # libpq names the stage's sessions: the CPU sampler splits PG by them
        command = [sys.executable, "-m", "tests.benchmarks.stage", role, str(config_path)]
        if role in res.cfg.profile or f"{label}-{role}" in res.cfg.profile:
            command = profiled(command, res, f"{label}-{role}")
        self._log = self.log_path.open("wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait(self, timeout_s: float | None = None) -> dict[str, Any]:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(30)
            raise RuntimeError(f"{self.label} {self.role} did not finish in {timeout_s:.0f}s; log: {self.log_path}"
                               ) from None
        finally:
            self._log.close()
        result: dict[str, Any] = {}
        if self.result_path.exists():
            result = json.loads(self.result_path.read_text(encoding="utf-8"))
        if code != 0 or not result:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RuntimeError(f"{self.label} {self.role} exited {code}; end of {self.log_path}:\n{tail}")
        result["process_s"] = time.perf_counter() - self.started
        return result


def run_stage(res: Resources, role: str, label: str, cfg: dict[str, Any]) -> dict[str, Any]:
    log(f"{label}: {role} ...")
    result = Stage(res, role, label, cfg).wait()
    rate = result.get("per_s")
    log(f"{label}: {role}: {result['items']} in {result['steady_seconds']:.2f}s steady"
        f" = {rate or 0:,.0f}/s, peak RSS {result['rss_mb']:.0f} MiB")
    return result


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# -- the passes --------------------------------------------------------------------------------------------------


def throughput_pass(res: Resources, label: str, n: int, *, naive: bool, clients: int | None = None,
                    peer: bool = False) -> dict[str, Any]:
    cfg = res.cfg
    clients = clients or cfg.clients_for(n)
    log(f"{label}: n={n:,} clients={clients:,} format={cfg.fmt} seed={cfg.seed}")
    dsn, empty = res.database(label)
    base_dsn, _ = res.database(f"{label}_base", migrated=False)
    overrides = res.worker_settings(label, dsn)
    settings = res.create_topics(overrides)
    workload = Workload(n, clients, cfg.seed, cfg.fmt)
    started = time.perf_counter()
    produced = produce_all(cfg.bootstrap, settings.kafka.cdc_topic, workload.messages())
    in_topic = topic_count(cfg.bootstrap, settings.kafka.cdc_topic)
    log(f"{label}: produced {produced:,} messages in {time.perf_counter() - started:.1f}s ({in_topic:,} in topic)")
    prefix = settings.kafka.ingest_group.rsplit("ingest", 1)[0]

    def stage_cfg(**extra: Any) -> dict[str, Any]:
        return {"settings": overrides, "idle_s": cfg.idle_s, "base_dsn": base_dsn, **extra}

    stages: dict[str, dict[str, Any]] = {}
    stages["raw"] = run_stage(res, "raw", label, stage_cfg(group=f"{prefix}raw", target=produced))
    stages["ingest"] = run_stage(res, "ingest", label, stage_cfg())
    if naive:
        stages["naive"] = run_stage(res, "naive", label, stage_cfg(group=f"{prefix}naive",
                                                                   target=min(produced, cfg.naive_n)))
    if peer:  # the eventsourcing library on the same messages, each path in its own database
        for mode, target in (("per_message", min(produced, cfg.naive_n)), ("batched", produced)):
            peer_dsn, _ = res.database(f"{label}_peer_{mode}", migrated=False)
            stages[f"peer_{mode}"] = run_stage(res, "peer", f"{label}-{mode}", stage_cfg(
                group=f"{prefix}peer-{mode}", target=target, mode=mode, peer_dsn=peer_dsn))
            res.groups.append(f"{prefix}peer-{mode}")
    events = int(scalar(dsn, "SELECT count(*) FROM events"))
    stages["relay"] = run_stage(res, "relay", label, stage_cfg())
    stages["projector"] = run_stage(res, "projector", label, stage_cfg())

    checks = {
        "messages_produced": produced,
        "messages_ingested": stages["ingest"]["items"],
        "events": events,
        "outbox_unpublished": int(scalar(dsn, "SELECT count(*) FROM outbox")),
        "events_published": stages["relay"]["items"],
        "events_projected": stages["projector"]["events"],
        "clients_in_read_model": int(scalar(dsn, "SELECT count(*) FROM client_summary")),
        "resync_requests": int(scalar(dsn, "SELECT count(*) FROM resync_requests")),
        "snapshots": int(scalar(dsn, "SELECT count(*) FROM snapshots")),
        "dead_letters": topic_count(cfg.bootstrap, settings.kafka.cdc_dlq_topic),
        "poison_produced": workload.counts["POISON"],
    }
    if checks["dead_letters"]:
        checks["dead_letter_reasons"] = dead_letter_reasons(cfg.bootstrap, settings.kafka.cdc_dlq_topic)
    for what, got, want in (("ingested", checks["messages_ingested"], produced),
                            ("published", checks["events_published"], events),
                            ("projected", checks["events_projected"], events),
                            ("dead-lettered", checks["dead_letters"], checks["poison_produced"])):
        if got != want:
            log(f"{label}: WARNING {what} {got:,}, expected {want:,}")
    if checks.get("dead_letter_reasons"):
        log(f"{label}: dead letters: {checks['dead_letter_reasons']}")
    size = database_size(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM")  # what autovacuum does in a steady state: the outbox's dead rows are freed
    vacuumed = database_size(dsn)
    with psycopg.connect(dsn) as conn:
        breakdown = {
            table: round(int(conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]) / MIB, 2)  # type: ignore[index]
            for table in ("events", "outbox", "snapshots", "client_summary", "client_status_history",
                          "resync_requests")
        }
    db = {
        "size_mb": round(vacuumed / MIB, 2),
        "size_before_vacuum_mb": round(size / MIB, 2),
        "empty_size_mb": round(empty / MIB, 2),
        "events": events,
        "mb_per_million_events": (vacuumed - empty) / MIB / events * 1e6 if events else None,
        "mb_per_million_events_before_vacuum": (size - empty) / MIB / events * 1e6 if events else None,
        "mb_per_million_events_incl_empty": vacuumed / MIB / events * 1e6 if events else None,
        "tables_mb": breakdown,
    }
    log(f"{label}: database {db['size_mb']} MiB for {events:,} events after VACUUM"
        f" ({db['mb_per_million_events'] or 0:,.0f} MiB per million over the empty database;"
        f" {db['mb_per_million_events_before_vacuum'] or 0:,.0f} before VACUUM)")
    if checks["outbox_unpublished"] == 0 and breakdown["outbox"] > EMPTY_OUTBOX_MB:
        db.update(outbox_vacuum_again(dsn, label, breakdown["outbox"], empty, events))
    ingest, raw = stages["ingest"], stages["raw"]
    worker_rss = [stages[s]["rss_mb"] for s in ("ingest", "relay", "projector")]
    return {
        "n": n,
        "clients": clients,
        "ingest_per_s": ingest["per_s"],
        "ingest_events_per_s": ingest["events_per_s"],
        "relay_per_s": stages["relay"]["per_s"],
        "projector_per_s": stages["projector"]["per_s"],
        "projector_applied_per_s": stages["projector"]["events_per_s"],
        "raw_per_s": raw["per_s"],
        "naive_per_s": stages["naive"]["per_s"] if naive else None,
        "peer_per_message_per_s": stages["peer_per_message"]["per_s"] if peer else None,
        "peer_batched_per_s": stages["peer_batched"]["per_s"] if peer else None,
        "peak_rss_mb": max(worker_rss),
        "db_mb_per_million_events": db["mb_per_million_events"],
        "mix": dict(workload.counts),
        "stages": stages,
        "db": db,
        "checks": checks,
    }


class CpuSampler(threading.Thread):
    """CPU of every process on this host, by kind (the roles, Kafka, PostgreSQL, this bench), read from /proc once
    a second: what the e2e pass shares the CPUs with. Linux only (elsewhere it reports nothing). Given the
    database, PostgreSQL's processes are also split by whom they serve (`by_backend`): a session by its
    application_name (each stage's is `bench-<role>`), any other process by its backend type (walwriter,
    checkpointer, autovacuum worker, ...)."""

    KINDS = (("tests.benchmarks.stage ingest", "ingest"), ("tests.benchmarks.stage relay", "relay"),
             ("tests.benchmarks.stage projector", "projector"), ("tests.benchmarks.stage e2e", "roles"),
             ("kafka.Kafka", "kafka"), ("postgres", "postgresql"))

    def __init__(self, dsn: str | None = None) -> None:
        super().__init__(name="cpu-sampler", daemon=True)
        self._stop_event = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._dsn = dsn
        self.samples: list[dict[str, float]] = []
        self.backend_samples: list[dict[str, float]] = []

    def _kind(self, pid: int, cmdline: str) -> str:
        if pid == os.getpid():
            return "bench"
        return next((kind for marker, kind in self.KINDS if marker in cmdline), "other")

    def _read(self) -> dict[int, tuple[str, float]]:
        out: dict[int, tuple[str, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # gone meanwhile
                continue
            out[int(entry)] = (self._kind(int(entry), cmdline), (int(fields[11]) + int(fields[12])) / self._tick)
        return out

    def run(self) -> None:
        if not os.path.isdir("/proc"):
            return
        conn = psycopg.connect(self._dsn, autocommit=True, application_name="bench-sampler") if self._dsn else None
        try:
            backends = self._backends(conn)
            before, at = self._read(), time.monotonic()
            while not self._stop_event.wait(1.0):
                now, now_at = self._read(), time.monotonic()
                backends.update(self._backends(conn))
                shares: dict[str, float] = {}
                by_backend: dict[str, float] = {}
                for pid, (kind, cpu) in now.items():
                    used = (cpu - before[pid][1] if pid in before else 0.0) / (now_at - at)
                    shares[kind] = shares.get(kind, 0.0) + used
                    if kind == "postgresql":
                        name = backends.get(pid, "postmaster and others")
                        by_backend[name] = by_backend.get(name, 0.0) + used
                self.samples.append(shares)
                self.backend_samples.append(by_backend)
                before, at = now, now_at
        finally:
            if conn is not None:
                conn.close()

    @staticmethod
    def _backends(conn: Any) -> dict[int, str]:
        if conn is None:
            return {}
        rows = conn.execute("SELECT pid, coalesce(nullif(application_name, ''), backend_type) FROM pg_stat_activity")
        return {pid: name for pid, name in rows.fetchall()}

    def stop(self) -> dict[str, float] | None:
        """The mean CPUs each kind used while sampled (None when nothing was sampled)."""
        self._stop_event.set()
        self.join(5)
        return self._means(self.samples)

    def by_backend(self) -> dict[str, float] | None:
        """PostgreSQL's mean CPUs by the session or background process they went to (after `stop`)."""
        return self._means(self.backend_samples)

    @staticmethod
    def _means(samples: list[dict[str, float]]) -> dict[str, float] | None:
        if not samples:
            return None
        kinds = sorted({k for sample in samples for k in sample})
        return {k: round(sum(s.get(k, 0.0) for s in samples) / len(samples), 3) for k in kinds}


# An empty outbox larger than this after VACUUM: its emptied end was not truncated (seen twice at x10, 252 MiB).
EMPTY_OUTBOX_MB = 8.0


def outbox_vacuum_again(dsn: str, label: str, outbox_mb: float, empty: int, events: int) -> dict[str, Any]:
    """VACUUM (VERBOSE) the empty outbox once more: what PostgreSQL says of its truncation goes to the log (why the
    first VACUUM left the pages), and the size after it is reported beside the first (which stays the figure)."""
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(f"{d.message_primary or ''} {d.message_detail or ''}"))
        holders = conn.execute(
            "SELECT pid, state, mode, granted, left(query, 60) FROM pg_locks JOIN pg_stat_activity USING (pid)"
            " WHERE relation = 'outbox'::regclass AND pid <> pg_backend_pid()").fetchall()
        conn.execute("VACUUM (VERBOSE) outbox")
        after = int(conn.execute("SELECT pg_total_relation_size('outbox')").fetchone()[0])  # type: ignore[index]
    size = database_size(dsn)
    log(f"{label}: VACUUM left the empty outbox at {outbox_mb:.1f} MiB (its end not truncated); other sessions"
        f" holding locks on it: {holders or 'none'}; a second VACUUM (VERBOSE) leaves {after / MIB:.1f} MiB:"
        f" {' | '.join(n.strip() for n in notices if 'truncat' in n or 'pages' in n)[:600]}")
    return {
        "outbox_not_truncated_mb": outbox_mb,
        "outbox_after_second_vacuum_mb": round(after / MIB, 2),
        "mb_per_million_events_after_second_vacuum": (size - empty) / MIB / events * 1e6 if events else None,
    }


TIMELINE_S = 2  # the e2e pass's latency timeline: the worst latency of each window of the feed
# The feeder produces what is due, then sleeps once it is a tick ahead: ~11 messages per wake-up at 2 200/s. It
# slept whenever it was 1 ms ahead and served delivery reports after every message: 0.13 of a CPU at 2 200/s,
# taken from the two the pass measures. Each message's latency starts at its own produce() (its CreateTime).
FEED_TICK_S = 0.005


def published_at(bootstrap: str, topic: str, timeout_s: float = 30.0) -> dict[str, float]:
    """event_id -> the time the relay produced it (the record's CreateTime on `client.events`)."""
    out: dict[str, float] = {}

    def note(m: Any) -> None:
        event_id = dict(m.headers() or []).get("event_id")
        if event_id:
            out[event_id.decode()] = m.timestamp()[1] / 1000

    read_topic(bootstrap, topic, note, timeout_s, "hops")
    return out


def hop_breakdown(dsn: str, produced: dict[tuple[int, int], float], committed: dict[str, float],
                  published: dict[str, float] | None = None) -> dict[str, float]:
    """Where the time goes, for each client's last change: produce -> the ingest transaction's start
    (events.recorded_at: the consume wait, the batch and its decoding) -> the relay's produce to `client.events`
    (its CreateTime: the ingest commit, the relay's wake-up and read) -> the projector transaction's start
    (client_summary.projected_at: the projector's consume wait) -> the projector's transaction committed (its
    batch and commit)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT (e.metadata->>'source_partition')::int, (e.metadata->>'source_offset')::bigint,"
            " extract(epoch FROM e.recorded_at)::float8, extract(epoch FROM s.projected_at)::float8, e.event_id::text"
            " FROM client_summary s JOIN events_with_metadata e ON e.stream_id = s.client_id AND e.version = s.version"
        ).fetchall()
    spans: dict[str, list[float]] = {}
    for partition, offset, recorded, projected, event_id in rows:
        at_produce = produced.get((partition, offset))
        seen = committed.get(event_id)
        if at_produce is None or seen is None:
            continue
        spans.setdefault("consume wait + decode (produce -> ingest tx)", []).append(recorded - at_produce)
        relayed = (published or {}).get(event_id)
        if relayed is None:
            spans.setdefault("ingest commit + relay + projector (-> projector tx)", []).append(projected - recorded)
        else:
            spans.setdefault("ingest commit + relay (-> published)", []).append(relayed - recorded)
            spans.setdefault("projector consume (-> projector tx)", []).append(projected - relayed)
        spans.setdefault("projector batch + commit (-> committed)", []).append(seen - projected)
    return {k: statistics.median(v) for k, v in spans.items()}


def e2e_pass(res: Resources, ingest_rate: float | None) -> dict[str, Any]:
    """Ingest + relay + projector together, fed at half the ingest rate; produce -> read model latency: from a
    change's Kafka timestamp to the moment the projector's transaction holding its last event had committed (the
    projector stage notes it per event, see `stage._timed_metrics`), for every change of the feed."""
    cfg = res.cfg
    rate = cfg.e2e_rate or max(20.0, (ingest_rate or 400.0) / 2)
    fed_at = "fixed by BENCH_E2E_RATE" if cfg.e2e_rate else "half the ingest rate"
    n = cfg.e2e_n or max(min(cfg.n, 1000), min(cfg.n, 20_000, int(rate * 30)))
    clients = cfg.clients_for(n)
    label = "e2e"
    dsn, _ = res.database(label)
    overrides = res.worker_settings(label, dsn)
    settings = res.create_topics(overrides)
    workload = Workload(n, clients, cfg.seed + 1, cfg.fmt, tag="BE")
    messages = list(workload.messages())
    warm_ids = [client_id("BW", i) for i in range(E2E_WARMUP)]
    log(f"{label}: {n:,} messages over {clients:,} clients at {rate:,.0f}/s ({fed_at})")
    if cfg.e2e_mode == "processes":  # no shared "upstream stopped" signal: a longer idle time instead
        stages = [Stage(res, role, label, {"settings": overrides, "idle_s": max(cfg.idle_s, 3.0) + 7, "stamp": True})
                  for role in ("ingest", "relay", "projector")]
    else:
        stages = [Stage(res, "e2e", label, {"settings": overrides, "idle_s": max(cfg.idle_s, 3.0), "stamp": True})]
    started_at = time.perf_counter()
    topic = settings.kafka.cdc_topic
    producer = Producer({"bootstrap.servers": cfg.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    produced: dict[tuple[int, int], float] = {}
    failures: list[Any] = []

    def report(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(err)
        else:
            produced[(msg.partition(), msg.offset())] = msg.timestamp()[1] / 1000

    for key, value, headers in workload.creates(warm_ids):
        producer.produce(topic, value=value, key=key, headers=headers)
    producer.flush(30)
    deadline = time.monotonic() + 180
    while scalar(dsn, "SELECT count(*) FROM client_summary WHERE client_id = ANY(%s)", (warm_ids,)) < len(warm_ids):
        if any(stage.process.poll() is not None for stage in stages) or time.monotonic() > deadline:
            for stage in stages:
                stage.wait(1)
            raise RuntimeError("the warm-up clients never reached the read model")
        time.sleep(0.05)
    log(f"{label}: roles warm ({time.perf_counter() - started_at:.1f}s after start); feeding")
    sampler = CpuSampler(dsn)
    sampler.start()
    t0 = time.monotonic()
    for i, (key, value, headers) in enumerate(messages):
        delay = t0 + i / rate - time.monotonic()
        if delay > FEED_TICK_S:  # ahead of the rate by a tick: serve delivery reports, then wait
            producer.poll(0)
            time.sleep(delay)
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    feed_s = time.monotonic() - t0
    cpu = sampler.stop()
    log(f"{label}: fed {len(messages):,} messages in {feed_s:.1f}s; waiting for the roles to go idle")
    pg_cpu = sampler.by_backend()
    if cpu:
        log(f"{label}: CPUs busy during the feed (of {os.cpu_count()}): {sum(cpu.values()):.2f}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
    if pg_cpu:
        log(f"{label}: PostgreSQL's CPUs by backend: " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(pg_cpu.items(), key=lambda kv: -kv[1]) if v >= 0.005))
    results = [stage.wait(timeout_s=max(300.0, feed_s * 10)) for stage in stages]
    committed: dict[str, float] = {k: v for r in results for k, v in (r.get("committed_at") or {}).items()}
    if failures:
        raise RuntimeError(f"{len(failures)} e2e messages not produced: {failures[:3]}")

    with psycopg.connect(dsn) as conn:
        # per change (a source message and a client): the event id of its last event
        rows = conn.execute(
            "SELECT DISTINCT ON (stream_id, 2, 3) (metadata->>'source_partition')::int,"
            " (metadata->>'source_offset')::bigint, stream_id, event_id::text"
            " FROM events_with_metadata WHERE metadata ? 'source_offset' ORDER BY stream_id, 2, 3, version DESC"
        ).fetchall()
    latencies, unseen = [], 0
    timeline: dict[int, list[float]] = {}  # latencies by the second of the feed their change was produced in
    fed_from = min(produced.values()) if produced else 0.0
    for partition, offset, _stream_id, event_id in rows:
        at_produce = produced.get((partition, offset))
        if at_produce is None:
            continue  # a warm-up message
        visible = committed.get(event_id)
        if visible is None:
            unseen += 1
            continue
        latencies.append(max(0.0, visible - at_produce))
        timeline.setdefault(int((at_produce - fed_from) // TIMELINE_S), []).append(latencies[-1])
    worst = {f"{k * TIMELINE_S}s": round(max(v), 3) for k, v in sorted(timeline.items())}
    if worst:
        # a stall shows as one or two high windows, a queue as a run of rising ones
        log(f"{label}: worst latency per {TIMELINE_S}s of the feed: " + " ".join(f"{v:.2f}" for v in worst.values()))
    if unseen:
        log(f"{label}: WARNING {unseen} changes never reported committed by the projector")
    hops = hop_breakdown(dsn, produced, committed, published_at(cfg.bootstrap, settings.kafka.events_topic))
    if hops:
        log(f"{label}: median per hop: " + ", ".join(f"{k} {v:.3f}s" for k, v in hops.items()))
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    rss = max(r["rss_mb"] for r in results)
    log(f"{label}: {len(latencies)} changes timed: p50 {p50 or 0:.3f}s p95 {p95 or 0:.3f}s p99 {p99 or 0:.3f}s;"
        f" peak RSS {rss:.0f} MiB ({cfg.e2e_mode})")
    return {
        "n": len(messages), "clients": clients, "feed_rate_per_s": rate, "feed_rate_fixed": bool(cfg.e2e_rate),
        "feed_s": feed_s,
        "sampled_clients": clients, "changes_timed": len(latencies), "unseen": unseen,
        "timed_at": "the projector's commit", "p50_s": p50, "p95_s": p95, "p99_s": p99,
        "max_s": max(latencies) if latencies else None, "median_hops_s": hops,
        "mean_s": statistics.fmean(latencies) if latencies else None, "rss_mb": rss, "mode": cfg.e2e_mode,
        "cpu_during_feed": cpu, "postgresql_cpu_by_backend": pg_cpu, "worst_by_window_s": worst,
        "batch_timeout_s": settings.kafka.batch_timeout_s,
    }


def snapshot_pass(res: Resources) -> dict[str, Any]:
    """A 10 000-event stream written through ClientBatch + the handlers, loaded back with and without
    snapshots (snapshot_interval 100 vs one larger than the stream)."""
    from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
    from worker.application.commands import ChangeClientDetails, ChangeMetadata, ClientData, RegisterClient
    from worker.application.handlers import HandlerContext, change_client_details, register_client
    from worker.application.unit_of_work import ClientBatch
    from worker.domain import StatusRule

    dsn, _ = res.database("snapshots")
    pool = make_pool(dsn, 2, 5.0)
    store = PostgresEventStore(pool)
    rule = StatusRule()

    def change(cid: str, i: int) -> ChangeMetadata:
        return ChangeMetadata(transaction_key=f"snap-{cid}-{i}", sequence_number=1,
                              commit_timestamp_ms=1_700_000_000_000 + i * 1000, change_type="UPDATE",
                              correlation_id=f"snap-{cid}-{i}", causation_id=f"bench:{i}")

    out: dict[str, Any] = {"events": SNAPSHOT_EVENTS}
    try:
        for label, cid, interval in (("snapshot", client_id("SN", 1), 100),
                                     ("no_snapshot", client_id("SN", 2), SNAPSHOT_EVENTS * 1000)):
            batch = ClientBatch(store, snapshot_interval=interval, worker_version="bench")
            ctx = HandlerContext(batch, rule)
            register_client(RegisterClient(client_id=cid, data=ClientData(name="Snapshot Bench", active="Yes"),
                                           change=change(cid, 0)), ctx)
            for i in range(1, SNAPSHOT_EVENTS):
                change_client_details(ChangeClientDetails(client_id=cid, changes={"phone": f"+1 555 {i:07d}"},
                                                          change=change(cid, i)), ctx)
            store.commit(batch.changes())
            times, replayed = [], 0
            for _ in range(7):
                loader = ClientBatch(store, snapshot_interval=interval, worker_version="bench")
                started = time.perf_counter()
                client = loader.get(cid)
                times.append(time.perf_counter() - started)
                replayed = loader.events_replayed
                if client.version != SNAPSHOT_EVENTS:
                    raise RuntimeError(f"{label}: loaded version {client.version}, wrote {SNAPSHOT_EVENTS}")
            out[f"{label}_load_s"] = statistics.median(times)
            out[f"{label}_events_replayed"] = replayed
            log(f"snapshots: {label}: load {statistics.median(times) * 1000:.1f} ms (median of 7),"
                f" {replayed} events replayed")
    finally:
        pool.close()
    return out


def environment(cfg: Config) -> dict[str, Any]:
    import confluent_kafka

    with psycopg.connect(cfg.database_url) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "confluent_kafka": getattr(confluent_kafka, "__version__", None) or str(confluent_kafka.version()),
        "librdkafka": confluent_kafka.libversion()[0],
        "psycopg": psycopg.__version__,
        "postgresql": server,
        "postgresql_settings": server_settings(cfg.database_url),
        "cpu_count": os.cpu_count(),
        "kafka_bootstrap": cfg.bootstrap,
        "kafka_partitions": broker_partitions(cfg.bootstrap),
        "worker_revision": _revision(),
    }


# Above this many partitions the local stack's broker (512 MiB heap) kept its heap full: ~0.8 s full GC pauses every
# few seconds, which the e2e pass then measured (tests used to leave their topics behind).
CROWDED_BROKER = 2000


def broker_partitions(bootstrap: str) -> int | None:
    """How many partitions the broker holds (topics of earlier runs included), or None when it does not say."""
    try:
        topics = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4}).list_topics(timeout=10).topics
    except Exception:
        return None
    return sum(len(t.partitions) for t in topics.values())


def _revision() -> str | None:
    """The checkout's commit, `+dirty` when worker/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "worker"], cwd=REPO, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


# -- output ------------------------------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def table(report: dict[str, Any]) -> str:
    main = report["main"]
    st = main["stages"]
    lines = [
        f"salesforce-cdc-worker benchmark: n={report['n']:,} messages, {main['clients']:,} clients,"
        f" format {report['format']}, seed {report['seed']}, {report['env']['cpu_count']} CPUs,"
        f" Python {report['env']['python']}, librdkafka {report['env']['librdkafka']},"
        f" PostgreSQL {report['env']['postgresql']}",
        "PostgreSQL settings: " + ", ".join(f"{k}={v}" for k, v in report["env"]["postgresql_settings"].items()),
        f"Kafka broker: {_num(report['env'].get('kafka_partitions'))} partitions before the run",
        "",
        f"{'stage':<34}{'rate':>12}  {'unit':<22}{'peak RSS MiB':>13}",
        "-" * 81,
    ]

    def row(name: str, rate: float | None, unit: str, rss: float | None) -> None:
        lines.append(f"{name:<34}{_num(rate):>12}  {unit:<22}{_num(rss):>13}")

    row("raw ceiling (consume+parse+COPY)", main["raw_per_s"], "messages/s", st["raw"]["rss_mb"])
    row("ingest", main["ingest_per_s"], "messages/s", st["ingest"]["rss_mb"])
    row("  events appended", main["ingest_events_per_s"], "events/s", None)
    if "naive" in st:
        row(f"naive (1 tx + 1 commit/msg, {st['naive']['items']:,})", main["naive_per_s"], "messages/s",
            st["naive"]["rss_mb"])
    if "peer_batched" in st:
        row("eventsourcing, save() per batch", main["peer_batched_per_s"], "messages/s", st["peer_batched"]["rss_mb"])
        row(f"eventsourcing, per message ({st['peer_per_message']['items']:,})", main["peer_per_message_per_s"],
            "messages/s", st["peer_per_message"]["rss_mb"])
    row("relay (outbox -> client.events)", main["relay_per_s"], "events/s", st["relay"]["rss_mb"])
    row("projector (-> read models)", main["projector_per_s"], "events/s", st["projector"]["rss_mb"])
    if report.get("e2e"):
        e2e = report["e2e"]
        what = "one process per role" if e2e["mode"] == "processes" else "all three in one process"
        row(f"e2e pass ({what})", e2e["feed_rate_per_s"], "messages/s fed", e2e["rss_mb"])
    r = report["ratios"]
    lines += [
        "",
        f"ratios: ingest/raw {_num(r['ingest/raw'], '.2f')}, ingest/naive {_num(r['ingest/naive'], '.2f')},"
        f" projector/ingest {_num(r['projector/ingest'], '.2f')}, relay/ingest {_num(r['relay/ingest'], '.2f')}"
        " (projector and relay against ingest's events/s)",
        f"ingest vs the eventsourcing library: {_num(r['ingest/peer_batched'], '.2f')}x its batched save,"
        f" {_num(r['ingest/peer_per_message'], '.2f')}x its per-message save",
    ]
    steady = {role: (st[role].get("steady_cpu_us_per_item"), st[role].get("per_s")) for role in ("raw", "ingest")}
    if all(cpu and rate for cpu, rate in steady.values()):
        lines.append("per message in the steady window, CPU / wall: " + ", ".join(
            f"{role} {cpu:.1f} / {1e6 / rate:.1f} µs" for role, (cpu, rate) in steady.items())
            + " (a CPU below the wall time is a wait)")
    if report.get("e2e"):
        e = report["e2e"]
        lines.append(
            f"end-to-end latency, produce -> read model ({e['changes_timed']:,} changes of {e['sampled_clients']}"
            f" clients, fed at {e['feed_rate_per_s']:,.0f}/s): p50 {_num(report['e2e_p50_s'], '.3f')}s"
            f"  p95 {_num(report['e2e_p95_s'], '.3f')}s  p99 {_num(report['e2e_p99_s'], '.3f')}s")
        if e.get("median_hops_s"):
            lines.append("  median per hop: " + ", ".join(f"{k} {v:.3f}s" for k, v in e["median_hops_s"].items()))
    db = main["db"]
    grown = db["size_mb"] - db["empty_size_mb"]
    lines.append(f"database: {_num(report['db_mb_per_million_events'])} MiB per million events after VACUUM"
                 f" ({_num(db['mb_per_million_events_before_vacuum'])} before); {grown:,.1f} MiB over the empty"
                 f" database for {db['events']:,} events: events {db['tables_mb']['events']} MiB,"
                 f" outbox {db['tables_mb']['outbox']} MiB, snapshots {db['tables_mb']['snapshots']} MiB,"
                 f" read model {db['tables_mb']['client_summary']} MiB")
    if report.get("snapshot_load_s") is not None:
        lines.append(
            f"aggregate load, {SNAPSHOT_EVENTS:,} events: {report['snapshot_load_s'] * 1000:,.1f} ms with snapshots"
            f" (every 100), {report['no_snapshot_load_s'] * 1000:,.1f} ms without"
            f" ({_num(ratio(report['no_snapshot_load_s'], report['snapshot_load_s']), '.0f')}x)")
    lines.append(f"peak RSS of the worker's processes: {_num(report['peak_rss_mb'])} MiB")
    if report.get("converge"):
        c = report["converge"]
        lines.append(f"convergence, {c['accounts']:,} Accounts on the fake Salesforce: backfill"
                     f" {_num(c['backfill_per_s'])} records/s, full reconcile {_num(c['reconcile_full_per_s'])}"
                     f" records/s (ingest: {_num(report['main']['ingest_per_s'])} messages/s)")
    for scale in (report.get("scale"), report.get("scale_wide")):
        if not scale:
            continue
        lines += [
            "",
            f"scale x{scale['factor']}: n={scale['n']:,} ({scale['clients']:,} clients):"
            f" ingest {_num(scale['ingest_per_s'])}/s vs {_num(main['ingest_per_s'])}/s at n={main['n']:,}"
            f" ({_num(ratio(scale['ingest_per_s'], main['ingest_per_s']), '.2f')}x);"
            f" raw {_num(scale['raw_per_s'])}/s, relay {_num(scale['relay_per_s'])}/s,"
            f" projector {_num(scale['projector_per_s'])}/s,"
            f" {_num(scale['db_mb_per_million_events'])} MiB per million events"
            + (f" ({_num(again)} after a second VACUUM of the empty outbox)"
               if (again := scale.get("db", {}).get("mb_per_million_events_after_second_vacuum")) else "")
            + f", peak RSS {_num(scale['peak_rss_mb'])} MiB",
        ]
    return "\n".join(lines)


def _scale_out(factor: int, scale: dict[str, Any] | None, main: dict[str, Any]) -> dict[str, Any] | None:
    if scale is None:
        return None
    return {
        "factor": factor,
        **{k: scale[k] for k in ("n", "clients", "ingest_per_s", "ingest_events_per_s", "relay_per_s",
                                 "projector_per_s", "raw_per_s", "naive_per_s", "peak_rss_mb",
                                 "db_mb_per_million_events")},
        "e2e_p50_s": None, "e2e_p95_s": None, "e2e_p99_s": None,
        "ingest_vs_base": ratio(scale["ingest_per_s"], main["ingest_per_s"]),
        "ingest/raw": ratio(scale["ingest_per_s"], scale["raw_per_s"]),
        "mix": scale["mix"], "stages": scale["stages"], "db": scale["db"], "checks": scale["checks"],
    }


def build_report(cfg: Config, env: dict[str, Any], main: dict[str, Any], e2e: dict[str, Any] | None,
                 snaps: dict[str, Any] | None, scale: dict[str, Any] | None,
                 wide: dict[str, Any] | None = None) -> dict[str, Any]:
    rss = [main["peak_rss_mb"], *([e2e["rss_mb"]] if e2e else [])]
    return {
        "n": main["n"],
        "clients": main["clients"],
        "format": cfg.fmt,
        "seed": cfg.seed,
        "ingest_per_s": main["ingest_per_s"],
        "ingest_events_per_s": main["ingest_events_per_s"],
        "relay_per_s": main["relay_per_s"],
        "projector_per_s": main["projector_per_s"],
        "raw_per_s": main["raw_per_s"],
        "naive_per_s": main["naive_per_s"],
        "e2e_p50_s": e2e["p50_s"] if e2e else None,
        "e2e_p95_s": e2e["p95_s"] if e2e else None,
        "e2e_p99_s": e2e["p99_s"] if e2e else None,
        "peak_rss_mb": max(rss),
        "db_mb_per_million_events": main["db_mb_per_million_events"],
        "snapshot_load_s": snaps["snapshot_load_s"] if snaps else None,
        "no_snapshot_load_s": snaps["no_snapshot_load_s"] if snaps else None,
        "scale": _scale_out(cfg.scale, scale, main),
        "scale_wide": _scale_out(cfg.scale_wide, wide, main),
        "peer_per_message_per_s": main["peer_per_message_per_s"],
        "peer_batched_per_s": main["peer_batched_per_s"],
        "env": env,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("database_url", "bootstrap")},
        "ratios": {
            "ingest/raw": ratio(main["ingest_per_s"], main["raw_per_s"]),
            "ingest/naive": ratio(main["ingest_per_s"], main["naive_per_s"]),
            "projector/ingest": ratio(main["projector_per_s"], main["ingest_events_per_s"]),
            "relay/ingest": ratio(main["relay_per_s"], main["ingest_events_per_s"]),
            "ingest/peer_batched": ratio(main["ingest_per_s"], main["peer_batched_per_s"]),
            "ingest/peer_per_message": ratio(main["ingest_per_s"], main["peer_per_message_per_s"]),
            "x5_ingest/base": ratio(scale["ingest_per_s"], main["ingest_per_s"]) if scale else None,
            "x10_ingest/base": ratio(wide["ingest_per_s"], main["ingest_per_s"]) if wide else None,
        },
        "units": {
            "ingest_per_s": "CDC messages/s", "raw_per_s": "CDC messages/s", "naive_per_s": "CDC messages/s",
            "relay_per_s": "events/s", "projector_per_s": "events/s", "rates": "steady state: end of the first"
            " batch to end of the last, the first batch left out", "mb": "MiB",
            "db_mb_per_million_events": "(database size after a plain VACUUM - size right after the migrations)"
            " / events * 1e6; main.db has the size before the VACUUM too (the outbox then still holds the whole"
            " backlog the relay stage found, as dead rows once published)",
            "peak_rss_mb": "largest VmHWM of the worker's stage processes (ingest, relay, projector, e2e)",
        },
        "main": main,
        "e2e": e2e,
        "snapshots": snaps,
    }


def leftovers(cfg: Config, run_id: str) -> Resources:
    """The resources of an earlier run, found by its id (after BENCH_KEEP=1)."""
    if not run_id.isalnum():
        raise SystemExit(f"not a run id: {run_id!r}")
    admin = AdminClient({"bootstrap.servers": cfg.bootstrap, "log_level": 4})
    prefix = f"bench-{run_id}."
    res = Resources(replace(cfg, keep=False), run_id, Path(tempfile.mkdtemp(prefix="bench-")))
    res.topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    res.groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid
                  if g.group_id.startswith(prefix)]
    with psycopg.connect(cfg.database_url) as conn:
        res.databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                     (f"bench\\_{run_id}\\_%",)).fetchall()]
    log(f"run {run_id}: {len(res.topics)} topic(s), {len(res.groups)} group(s), {len(res.databases)} database(s)")
    return res


def _run(cfg: Config, res: Resources) -> dict[str, Any]:
    env = environment(cfg)
    log(f"run {res.run_id}: {env['cpu_count']} CPUs, Python {env['python']}, librdkafka {env['librdkafka']},"
        f" PostgreSQL {env['postgresql']}; stage logs in {res.workdir}")
    log("PostgreSQL settings measured under: " + ", ".join(f"{k}={v}" for k, v in env["postgresql_settings"].items()))
    partitions = env["kafka_partitions"]
    log(f"Kafka broker at {cfg.bootstrap}: {partitions if partitions is not None else '?'} partitions before this run")
    if partitions is not None and partitions > CROWDED_BROKER:
        log(f"WARNING: the broker holds {partitions:,} partitions (topics left behind by earlier runs?): a small"
            " broker heap then pauses in garbage collection, and latency figures measure those pauses; delete"
            " the stale topics (or `make clean` the local stack) for figures of the worker")
    warmup = warm_broker(res)
    main = throughput_pass(res, "main", cfg.n, naive=True, peer=cfg.peer)
    e2e = e2e_pass(res, main["ingest_per_s"])
    snaps = snapshot_pass(res)
    scale = throughput_pass(res, f"x{cfg.scale}", cfg.n * cfg.scale, naive=False) if cfg.scale > 1 else None
    # the wide pass: 10 x N messages over 2 x N clients (5 changes each: 500 000 over 100 000 at N = 50 000), a
    # working set far larger than the base pass's
    wide = (throughput_pass(res, f"x{cfg.scale_wide}", cfg.n * cfg.scale_wide, naive=False,
                            clients=max(1, cfg.n * cfg.scale_wide // 5)) if cfg.scale_wide > 1 else None)
    report = build_report(cfg, env, main, e2e, snaps, scale, wide)
    report["broker_warmup"] = warmup
    converge_n = int(os.environ.get("BENCH_CONVERGE_N", "100000"))
    if converge_n:  # backfill and full reconcile on the fake Salesforce (tests/benchmarks/converge.py)
        from tests.benchmarks.converge import run_converge

        log(f"convergence: backfill and full reconcile of {converge_n:,} Accounts")
        report["converge"] = run_converge(cfg.database_url, converge_n)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON to this file")
    parser.add_argument("--cleanup", metavar="RUN_ID", help="remove what a BENCH_KEEP run left (topics, groups,"
                        " databases of that run id), then exit")
    args = parser.parse_args(argv)
    dropped = [k for k in os.environ if k.startswith("WORKER_")]
    for key in dropped:
        del os.environ[key]  # every setting of the stages comes from the run's own configuration
    if dropped:
        log(f"ignoring {', '.join(sorted(dropped))}")
    cfg = Config.from_env()
    if args.cleanup:
        leftovers(cfg, args.cleanup).cleanup()
        return 0
    with durable_postgres(cfg.database_url) as url:
        cfg = replace(cfg, database_url=url)
        res = Resources(cfg, uuid.uuid4().hex[:8], Path(tempfile.mkdtemp(prefix="bench-")))
        try:
            report = _run(cfg, res)
        except BaseException:
            res.cleanup(keep_logs=True)
            raise
        res.cleanup()
    print(table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
