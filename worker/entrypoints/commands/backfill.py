"""`worker backfill [--json]`: load every Account of the org (the initial load CDC cannot give).

It is a full resync run to completion in this process: one Bulk API 2.0 queryAll job read page by page, each
page's events committed with its cursor (a killed backfill resumes after its last page), then the clients the scan
did not see read by id. Records Salesforce has as we have them append nothing, so a second run appends nothing;
a change ingest applied after the record was read is never reverted (the record is read again)."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from worker import bootstrap
from worker.application.resync import Resynchronizer
from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import CliError, add_connection_options, print_json
from worker.entrypoints.progress import Progress

log = logging.getLogger("worker.backfill")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backfill", help="load every Account from Salesforce (initial load; resumable, idempotent)",
        description="worker backfill [--json]: a full resync run to completion in this process",
    )
    parser.add_argument("--json", action="store_true", help="progress as JSON log lines, the summary as JSON")
    parser.add_argument("--reason", default="initial load (worker backfill)", help="recorded with the request")
    add_connection_options(parser, kafka=False)
    parser.set_defaults(func=_backfill)


def _backfill(args: argparse.Namespace, ops: Operations) -> int:
    settings = ops.settings
    with bootstrap.long_command(settings, args.json) as app:
        try:
            resync = bootstrap.backfill_resync(app)
        except ValueError as exc:
            raise CliError(f"worker backfill cannot read Salesforce: {exc}") from None
        queue = bootstrap.resync_queue(app)
        # one under way (a killed backfill, an overflow's) is resumed, not doubled: it reads every Account too
        if queue.full_resyncs_pending() or not queue.request_full(args.reason, None):
            log.info("backfill: a full resync is under way already; driving it to completion")
        summary = _drive(resync, queue, app, Progress("backfill", terminal=Progress.on_terminal(args.json), log=log),
                         settings.resync.scan_poll_s, settings.resync.poll_interval_s)
    if args.json:
        print_json(summary)
    else:
        print(f"backfill done: {summary['records']} record(s) read in {summary['pages']} page(s), "
              f"{summary['changed']} client(s) changed, {summary['seconds']}s ({summary['records_per_s']}/s)")
    return 0


def _drive(resync: Resynchronizer, queue: Any, app: bootstrap.App,
           progress: Progress, scan_poll_s: float, poll_s: float) -> dict[str, object]:
    """Steps until no full resync is left (another worker may hold it: then wait for it) and no read it queued
    is due. Progress counts the records of the oldest full resync (resumed ones included)."""
    started = time.monotonic()
    total: int | None = None
    done = pages = changed = 0
    source: Any = app.client_source
    while True:
        report = resync.step()
        pages += report.pages
        changed += report.changed
        current = queue.full_scan_progress()
        if current is not None:
            scan_id, _phase, _pages, done = current
            if total is None and scan_id is not None and hasattr(source, "scan_size"):
                total = source.scan_size(scan_id)
        progress.update(done, total)
        if report.worked:
            continue
        if report.waiting:
            time.sleep(scan_poll_s)
        elif current is not None:
            time.sleep(poll_s)  # held by another worker (the resync role): wait for it
        else:
            break
    progress.update(done if total is None else total, total, final=True)
    seconds = round(time.monotonic() - started, 1)
    records = total if total is not None else done
    return {"records": records, "pages": pages, "changed": changed, "seconds": seconds,
            "records_per_s": round(records / max(seconds, 0.1))}
