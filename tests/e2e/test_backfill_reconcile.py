"""`worker backfill` and `worker reconcile` as an operator runs them: a backfill killed halfway resumes without
starting over and a rerun appends nothing; a backfill running beside ingest never reverts a newer change; a
reconcile names each kind of drift, repairs it through the resync role and exits 0 once nothing is left."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.cdc_factory import CdcFactory
from tests.conftest import wait_for
from tests.e2e.conftest import Cli, stop
from tests.fakes.salesforce_server import FakeSalesforce
from tests.harness import produce, rows

A, B, C, D = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA", "001000000000004AAA"


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(custom_fields={"Region__c": "string", "Active__c": "picklist"}, person_accounts=True,
                        bulk_page_size=40) as server:
        yield server


@pytest.fixture
def sf_cli(cli: Cli, fake: FakeSalesforce) -> Cli:
    cli.env.update({
        "WORKER_SALESFORCE__AUTH": "session", "WORKER_SALESFORCE__SESSION_ID": "token",
        "WORKER_SALESFORCE__INSTANCE_URL": fake.url, "WORKER_SALESFORCE__BULK_PAGE_SIZE": "40",
        "WORKER_RESYNC__POLL_INTERVAL_S": "0.1", "WORKER_RESYNC__SCAN_POLL_S": "0.1",
    })
    return cli


def _events(dsn: str) -> int:
    return int(rows(dsn, "SELECT count(*) FROM events")[0][0])


def test_a_backfill_killed_halfway_resumes_after_its_last_page_and_a_second_run_appends_nothing(
    sf_cli: Cli, fake: FakeSalesforce, worker_env: dict[str, str],
) -> None:
    ids = fake.generate(400, seed=3)
    for n in range(0, 400, 50):
        fake.delete(ids[n])
    fake.slow("bulkResults", 0.4, times=1000)  # ten pages of 40, slow enough to be killed halfway
    dsn = worker_env["WORKER_POSTGRES__URL"]
    process = sf_cli.start("backfill", "--json")
    try:
        wait_for(lambda: rows(dsn, "SELECT coalesce(max(pages), 0) FROM full_resync_requests")[0][0] >= 4,
                 timeout_s=60, what="four pages applied")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        stop(process)
    read_before = fake.count("bulkResults")
    assert read_before < 10
    result = sf_cli("backfill", "--json")
    summary = json.loads(result.stdout)
    assert fake.count("bulk") == 1, "the rerun resumed the same query job"
    assert fake.count("bulkResults") <= 11, "pages applied before the kill are not read again"
    assert summary["records"] == 400
    assert rows(dsn, "SELECT count(DISTINCT stream_id) FROM events") == [(400,)]
    deleted = rows(dsn, "SELECT count(*) FROM events WHERE payload->>'deleted' = 'true'")
    assert deleted == [(8,)], "one event per client, deletions included"
    progress = [json.loads(line) for line in result.stderr.splitlines() if '"progress_done"' in line]
    assert progress and progress[-1]["final"] is True

    appended = _events(dsn)
    sf_cli("backfill", "--json")
    assert _events(dsn) == appended, "a second backfill appends nothing"


def test_a_backfill_beside_ingest_takes_a_change_it_contains_as_covered_and_applies_a_newer_one(
    sf_cli: Cli, fake: FakeSalesforce, worker_env: dict[str, str],
) -> None:
    start_ms = int(datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp() * 1000)
    f = CdcFactory(start_ms=start_ms)
    fake.add(A, Name="Acme", Phone="1", Active__c="Yes", Type="Customer - Direct")  # as of 10:00:00
    covered, newer = f.update(A, Phone="1"), f.update(A, Phone="2")  # 10:00:00 (contained), 10:00:01
    sf_cli("backfill")
    dsn = worker_env["WORKER_POSTGRES__URL"]
    produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"], [covered, newer])
    sf_cli("run", "ingest", "--exit-when-idle", "1")
    types = [t for (t,) in rows(dsn, "SELECT event_type FROM events WHERE stream_id = %s ORDER BY version", (A,))]
    assert types == ["ClientResynchronized", "ClientDetailsChanged"]
    assert rows(dsn, "SELECT payload->'changes'->'phone'->>1 FROM events WHERE stream_id = %s AND version = 2",
                (A,)) == [("2",)]


def test_reconcile_reports_each_kind_of_drift_repairs_it_and_exits_zero_when_none_is_left(
    sf_cli: Cli, fake: FakeSalesforce, worker_env: dict[str, str],
) -> None:
    f = CdcFactory(start_ms=int(datetime(2026, 11, 24, 9, 0, tzinfo=UTC).timestamp() * 1000))
    for cid in (A, B, C):
        fake.add(cid, Name=f"Client {cid[-4:]}", Type="Customer - Direct", Active__c="Yes", Region__c="EU")
    fake.add(D, Name="Only in Salesforce", Active__c="No")
    produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"], [
        f.create(A, Region__c="EU"),
        f.create(B, Region__c="US", Phone="wrong"),  # field_diff: region and phone
        f.create(C, Region__c="EU"), f.delete(C),  # deleted here, live in Salesforce
        f.create("001000000000005AAA"),  # gone: Salesforce never had it
    ])
    sf_cli("run", "ingest", "--exit-when-idle", "1")
    sf_cli("run", "relay", "--exit-when-idle", "1")
    sf_cli("run", "projector", "--exit-when-idle", "1")

    report = sf_cli("reconcile", "--full", "--report-only", "--json", check=False)
    assert report.returncode == 4, report.stderr[-2000:]
    data = json.loads(report.stdout)
    assert data["found"] == {"missing": 1, "gone": 1, "deleted_mismatch": 1, "field_diff": 1}
    assert data["first_ids"]["missing"] == [D] and data["first_ids"]["gone"] == ["001000000000005AAA"]
    assert data["first_ids"]["deleted_mismatch"] == [C]
    assert sorted(data["field_diffs"][B]) == ["extra.Region__c", "phone"]

    resync = sf_cli.start("run", "all", "--exit-when-idle", "30")
    try:
        repaired = sf_cli("reconcile", "--full", "--json", "--wait-timeout", "90", check=False)
    finally:
        resync.send_signal(signal.SIGTERM)
        stop(resync)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr[-2000:]
    assert json.loads(repaired.stdout)["remaining"] == {"missing": 0, "gone": 0, "deleted_mismatch": 0,
                                                        "field_diff": 0}
    dsn = worker_env["WORKER_POSTGRES__URL"]
    assert rows(dsn, "SELECT outcome, found->>'missing' FROM reconcile_runs ORDER BY id") == [
        ("reported", "1"), ("converged", "1")]
    again = sf_cli("reconcile", "--json")  # incremental from the last run's start: nothing left
    assert json.loads(again.stdout)["mode"] == "incremental"
