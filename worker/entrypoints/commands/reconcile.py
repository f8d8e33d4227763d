"""`worker reconcile [--since DURATION | --full] [--report-only] [--no-wait] [--json] [--limit N]`: compare the
read model with Salesforce, report the drift by kind, repair it through the resync queue and wait for the repairs.

Without --since/--full: from a pending request (a retention cliff asked for one), else from the start of the last
reconcile; with neither, a full one. Exit codes: 0 no drift left, 4 drift left (reported only, not repaired in
time, or not waited for), 1 error, 2 usage."""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from worker import bootstrap
from worker.adapters.kafka.reset_plan import parse_time
from worker.application.reconcile import DriftKind, DriftReport, ReconcilePacing
from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import EXIT_USAGE, CliError, add_connection_options, print_json, print_table
from worker.entrypoints.progress import Progress

EXIT_DRIFT = 4
log = logging.getLogger("worker.reconcile")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reconcile", help="compare the read model with Salesforce, repair the drift (exit 4: drift left)",
        description="worker reconcile [--since DURATION | --full] [--report-only] [--no-wait] [--json] [--limit N]",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--since", metavar="DURATION", help="records modified since (2h, PT30M, or ISO time)")
    scope.add_argument("--full", action="store_true", help="every Account (one Bulk API query job)")
    parser.add_argument("--report-only", action="store_true", help="report the drift, repair nothing")
    parser.add_argument("--no-wait", action="store_true", help="queue the repairs, do not wait for them")
    parser.add_argument("--wait-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="how long to wait for the resync role to apply the repairs (default 600)")
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="ids shown per drift kind")
    parser.add_argument("--json", action="store_true")
    add_connection_options(parser, kafka=False)
    parser.set_defaults(func=_reconcile)


def _reconcile(args: argparse.Namespace, ops: Operations) -> int:
    with bootstrap.long_command(ops.settings, args.json) as app:
        return _run(args, app)


def _run(args: argparse.Namespace, app: bootstrap.App) -> int:
    ledger = bootstrap.reconcile_ledger(app)
    started_at = datetime.now(UTC)
    mode, since, request = _scope(args, ledger)
    progress = Progress("reconcile", terminal=Progress.on_terminal(args.json), log=log)
    pacing = ReconcilePacing(wait_timeout_s=args.wait_timeout, scan_poll_s=app.settings.resync.scan_poll_s)
    try:
        reconciler = bootstrap.reconciler(app, pacing, progress.update)
    except ValueError as exc:
        raise CliError(f"worker reconcile cannot read Salesforce: {exc}") from None
    clock = time.monotonic()
    try:
        found = reconciler.full() if since is None else reconciler.incremental(int(since.timestamp() * 1000))
        progress.update(found.compared, final=True)
        left = found
        if found.drifts and not args.report_only:
            reason = f"reconcile {mode} of {started_at:%Y-%m-%dT%H:%M:%SZ}"
            left = reconciler.repair_and_wait(found, bootstrap.resync_queue(app), reason, wait=not args.no_wait)
    except Exception as exc:
        ledger.record_run(mode=mode, since=since, started_at=started_at, compared=0, found={}, remaining={},
                          repaired=0, outcome="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    repaired = 0 if args.report_only else len(found.drifts)
    outcome = "converged" if not left.drifts else ("reported" if args.report_only else "drift")
    run_id = ledger.record_run(mode=mode, since=since, started_at=started_at, compared=found.compared,
                               found=found.counts(), remaining=left.counts(), repaired=repaired, outcome=outcome)
    if request is not None and not args.report_only:
        ledger.honoured(run_id, request)
    _print(args, mode, since, found, left, repaired, time.monotonic() - clock)
    return 0 if not left.drifts else EXIT_DRIFT


def _scope(args: argparse.Namespace, ledger: Any) -> tuple[str, datetime | None, int | None]:
    """(mode, since, the last request honoured): None since means a full reconcile."""
    if args.full:
        return "full", None, None
    if args.since:
        try:
            since = parse_time(args.since)
        except ValueError as exc:
            raise CliError(f"--since: {exc}", EXIT_USAGE) from None
        return "incremental", since, None
    pending = ledger.pending()
    watermark = ledger.watermark()
    if pending is not None:
        log.info("reconcile: honouring %d pending request(s) (since %s)", pending.count, pending.since or "-")
        if pending.full or pending.since is None:
            return "full", None, pending.last_id
        since = pending.since if watermark is None else min(pending.since, watermark)
        return "incremental", since, pending.last_id
    if watermark is None:
        return "full", None, None
    return "incremental", watermark - timedelta(seconds=1), None  # one-second clocks: the boundary again


def _print(args: argparse.Namespace, mode: str, since: datetime | None, found: DriftReport, left: DriftReport,
           repaired: int, seconds: float) -> None:
    first = {kind.value: [d.client_id for d in left.of_kind(kind)][: args.limit] for kind in DriftKind}
    fields = {d.client_id: list(d.fields) for d in left.of_kind(DriftKind.FIELD_DIFF)[: args.limit]}
    if args.json:
        print_json({"mode": mode, "since": since.isoformat() if since else None, "compared": found.compared,
                    "found": found.counts(), "remaining": left.counts(), "repaired": repaired,
                    "first_ids": first, "field_diffs": fields, "seconds": round(seconds, 1),
                    "converged": not left.drifts})
        return
    print(f"reconcile {mode}" + (f" since {since.isoformat()}" if since else "")
          + f": {found.compared} record(s) compared in {seconds:.1f}s")
    table = [{"kind": k, "found": found.counts()[k], "remaining": left.counts()[k],
              "first ids": " ".join(first[k]) or None} for k in found.counts()]
    print_table(table, ["kind", "found", "remaining", "first ids"])
    for cid, names in fields.items():
        print(f"  {cid}: {', '.join(names)}")
    if not left.drifts:
        print("no drift left" + (f" ({repaired} client(s) repaired)" if repaired else ""))
    elif args.report_only:
        print(f"{len(left.drifts)} client(s) drift (report only: nothing repaired)")
    else:
        print(f"{len(left.drifts)} client(s) still drift" + (" (repairs queued, not waited for)"
                                                           if args.no_wait else ""))
