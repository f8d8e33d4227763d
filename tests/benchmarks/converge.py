"""Convergence stage of the benchmark: `worker backfill` and a full `worker reconcile` of BENCH_CONVERGE_N
Accounts (100 000; 0 skips it) on the tests' fake Salesforce over HTTP, as records per second.

Alone: `python -m tests.benchmarks.converge --n 2000` (needs DATABASE_URL; makes and drops its own database).
Both are the CLI's commands run in this process, so the figures include the fake's HTTP and CSV paging."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import uuid
from contextlib import redirect_stdout
from typing import Any

import psycopg

from tests.benchmarks.common import log, with_database
from tests.fakes.salesforce_server import FakeSalesforce


def run_converge(database_url: str, n: int, bulk_page_size: int = 10_000) -> dict[str, Any]:
    """Backfill then full reconcile of ``n`` generated Accounts into a fresh database; records/s of each."""
    from worker.adapters.postgres.migrate import migrate
    from worker.entrypoints.cli import main as worker

    name = f"bench_converge_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(database_url, name)
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("WORKER_")}
    try:
        migrate(url)
        with FakeSalesforce(custom_fields={"Active__c": "picklist"}, bulk_page_size=bulk_page_size,
                            daily_limit=10**9) as fake:
            fake.generate(n, seed=42)
            os.environ.update({
                "WORKER_POSTGRES__URL": url, "WORKER_SALESFORCE__AUTH": "session",
                "WORKER_SALESFORCE__SESSION_ID": "bench", "WORKER_SALESFORCE__INSTANCE_URL": fake.url,
                "WORKER_SALESFORCE__BULK_PAGE_SIZE": str(bulk_page_size), "WORKER_RESYNC__SCAN_POLL_S": "0.2",
                "WORKER_OBSERVABILITY__LOG_LEVEL": "WARNING", "WORKER_OBSERVABILITY__METRICS_PORT": "0",
            })
            backfill = _timed(worker, ["backfill", "--json"])
            # the read model is what reconcile compares: project the backfill's events first (not timed here)
            _project(url)
            reconcile = _timed(worker, ["reconcile", "--full", "--report-only", "--json"], ok=(0, 4))
    finally:
        for key in [k for k in os.environ if k.startswith("WORKER_")]:
            del os.environ[key]
        os.environ.update(saved)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "accounts": n,
        "backfill_s": backfill["seconds"], "backfill_per_s": n / backfill["seconds"],
        "reconcile_full_s": reconcile["seconds"], "reconcile_full_per_s": n / reconcile["seconds"],
        "reconcile_drift": reconcile["output"].get("remaining"),
    }


def _timed(worker: Any, argv: list[str], ok: tuple[int, ...] = (0,)) -> dict[str, Any]:
    out = io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(out):
        code = worker(argv)
    seconds = time.perf_counter() - started
    if code not in ok:
        raise RuntimeError(f"worker {' '.join(argv)} exited {code}")
    return {"seconds": seconds, "output": json.loads(out.getvalue() or "{}")}


def _project(url: str) -> None:
    """Apply every stored event to the read model straight from the event store (the rebuild path)."""
    from worker.bootstrap_operations import Operations
    from worker.config import load_settings
    from worker.roles.rebuild import rebuild_from_event_store

    ops = Operations(load_settings)
    try:
        rebuild_from_event_store(ops.event_log(), ops.read_models(), lambda _done, _total: None)
    finally:
        ops.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.converge", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_CONVERGE_N", "100000")))
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 1
    log(f"convergence: backfill and full reconcile of {args.n:,} Accounts")
    print(json.dumps(run_converge(url, args.n), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
