"""What the outbox of references (migration 008) saves, on the same batches: `python -m
tests.benchmarks.outbox_footprint` (DATABASE_URL: a server to create two databases in; `make up`, then `eval
"$(python3 deploy/stack.py env)"`). Not part of `make bench`.

The benchmark's workload (`Workload`, pubsub format) is decoded and decided as ingest does (`IngestProcessor`,
its events recorded in memory), then cut into batches of ``--batch`` events. The same batches are committed by
`PostgresEventStore.commit` to a database at migration 007 whose outbox is filled as 007 did (a copy of each
event), and to one at 008 (references). Per variant, it prints: the WAL each commit wrote (insert LSN before and
after it, autovacuum off on the tables so nothing else writes), the outbox's bytes per row (pg_column_size of the
rows, heap and primary key per row), the server's time for the relay's read of a page and the WAL of its
delete; at 008, EXPLAIN ANALYZE of the relay's read once the outbox is down to ``--keep`` rows. The commit's
time is printed too, for what it is worth on a shared machine."""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import psycopg

from tests.benchmarks.common import log, with_database
from tests.benchmarks.workload import Workload
from tests.fakes.event_store import MemoryStore
from tests.fakes.kafka import OffsetMessage
from tests.outbox_before_008 import UNPUBLISHED_007, filling_the_outbox_as_007
from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
from worker.adapters.postgres.migrate import migrate
from worker.adapters.postgres.outbox import _UNPUBLISHED
from worker.adapters.salesforce.decoder import CdcDecoder
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.adapters.salesforce.mapping import FieldMapping
from worker.adapters.salesforce.schemas import SchemaResolver
from worker.application.bus import CommandBus, default_middleware
from worker.application.ports import BatchChanges, StoredEvent
from worker.application.unit_of_work import ClientBatch
from worker.domain import StatusRule
from worker.roles.ingest import IngestProcessor

TOPIC = "salesforce.cdc.account"


def recorded_events(n_messages: int, clients: int, seed: int) -> list[StoredEvent]:
    """The events ingest records for the workload's first ``n_messages`` (batches of 500 messages)."""
    store = MemoryStore()
    processor = IngestProcessor(
        CdcDecoder(SchemaResolver(), FieldMapping.from_overrides(), cdc_format="auto", own_client_id=None),
        (ChangeEventParseError,), CommandBus(middleware=default_middleware()),
        lambda: ClientBatch(store, snapshot_interval=100, worker_version="bench"), StatusRule())
    messages = [OffsetMessage(0, offset, TOPIC, value, key, headers)
                for offset, (key, value, headers) in enumerate(Workload(n_messages, clients, seed).messages())]
    for start in range(0, len(messages), 500):
        processor.process(messages[start:start + 500])
    return store.events


def batches_of(events: list[StoredEvent], size: int, count: int) -> list[BatchChanges]:
    if len(events) < size * count:
        raise SystemExit(f"the workload recorded {len(events)} events, fewer than {size} x {count}")
    return [BatchChanges(events=events[i * size:(i + 1) * size]) for i in range(count)]


def wal_lsn(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn").fetchone()[0])  # type: ignore[index]


def scalar(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]


def measure(dsn: str, variant: str, batches: list[BatchChanges], page: int, keep: int) -> dict[str, Any]:
    migrate(dsn, up_to=7 if variant == "007" else None)
    fill: Callable[[], AbstractContextManager[Any]] = filling_the_outbox_as_007 if variant == "007" else nullcontext
    read = UNPUBLISHED_007 if variant == "007" else _UNPUBLISHED
    out: dict[str, Any] = {"variant": variant}
    with psycopg.connect(dsn, autocommit=True) as probe, make_pool(dsn, 1, 5.0) as pool:
        for table in ("events", "outbox", "event_batches"):
            probe.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        store = PostgresEventStore(pool)
        wal, seconds = [], []
        with fill():
            for batch in batches:
                before, started = wal_lsn(probe), time.perf_counter()
                store.commit(batch)
                seconds.append(time.perf_counter() - started)
                wal.append(wal_lsn(probe) - before)
        n = scalar(probe, "SELECT count(*) FROM outbox")
        out["commit_wal_bytes"] = wal
        out["commit_wal_bytes_median"] = statistics.median(wal)
        out["commit_wal_bytes_per_event_median"] = round(statistics.median(wal) / len(batches[0].events), 1)
        out["commit_seconds_median"] = round(statistics.median(seconds), 4)
        out["outbox_rows"] = n
        out["outbox_row_bytes_avg"] = float(scalar(probe, "SELECT round(avg(pg_column_size(o.*)), 1) FROM outbox o"))
        out["outbox_heap_bytes_per_row"] = round(scalar(probe, "SELECT pg_relation_size('outbox')") / n, 1)
        out["outbox_pkey_bytes_per_row"] = round(scalar(probe, "SELECT pg_relation_size('outbox_pkey')") / n, 1)
        out["outbox_total_bytes_per_row"] = round(scalar(probe, "SELECT pg_total_relation_size('outbox')") / n, 1)
        out["events_heap_bytes_per_row"] = round(scalar(probe, "SELECT pg_relation_size('events')")
                                                 / scalar(probe, "SELECT count(*) FROM events"), 1)
        probe.execute("VACUUM ANALYZE")  # what autovacuum would have done by then: the planner sees the tables
        reads, deletes = [], []
        with psycopg.connect(dsn, autocommit=True) as relay:
            while scalar(probe, "SELECT count(*) FROM outbox") > keep:
                # the server's time (the client's is mostly decoding the JSON, the same rows either way)
                ((plan,),) = relay.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {read}", ([], page)).fetchall()
                reads.append(plan[0]["Execution Time"])
                rows = relay.execute(read, ([], page)).fetchall()
                before = wal_lsn(probe)
                relay.execute("DELETE FROM outbox WHERE position = ANY(%s)", ([r[0] for r in rows],))
                deletes.append(wal_lsn(probe) - before)
            out["relay_read_page_server_ms_median"] = round(statistics.median(reads), 2)
            out["relay_delete_page_wal_bytes_median"] = statistics.median(deletes)
            if variant != "007":
                probe.execute("ANALYZE")
                plan = relay.execute(f"EXPLAIN (ANALYZE, BUFFERS) {read}", ([], page)).fetchall()
                out["plan"] = [line for (line,) in plan]
                out["plan_outbox_rows"] = scalar(probe, "SELECT count(*) FROM outbox")
                out["plan_events_rows"] = scalar(probe, "SELECT count(*) FROM events")
    return out


@contextmanager
def database(server: str) -> Iterator[str]:
    name = f"outbox_footprint_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=500, help="events per commit")
    parser.add_argument("--batches", type=int, default=40, help="commits per variant")
    parser.add_argument("--page", type=int, default=500, help="the relay's page")
    parser.add_argument("--keep", type=int, default=3000, help="outbox rows left for EXPLAIN ANALYZE")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", help="write the results as JSON here too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the workload's poison messages are dead-lettered with a warning
    server = os.environ.get("DATABASE_URL")
    if not server:
        raise SystemExit("DATABASE_URL is not set (make up; eval \"$(python3 deploy/stack.py env)\")")
    wanted = args.batch * args.batches
    events = recorded_events(int(wanted * 1.1) + 500, max(1, wanted // 4), args.seed)
    batches = batches_of(events, args.batch, args.batches)
    log(f"{len(batches)} batches of {args.batch} events from the benchmark's workload")
    results = []
    for variant in ("007", "008"):
        with database(server) as dsn:
            results.append(measure(dsn, variant, batches, args.page, args.keep))
    print(json.dumps(results, indent=1))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
