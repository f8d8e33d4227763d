"""The resync role against the faithful Salesforce fake (real HTTP) and the real PostgreSQL: merging reads,
claims shared by replicas, newer changes never reverted, failures isolated and capped, resumable full resyncs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import psycopg
import pytest

from tests.cdc_factory import CdcFactory
from tests.conftest import wait_for
from tests.fakes.salesforce_server import FakeSalesforce
from tests.harness import create_worker_topics, produce, rows, running, settings_for
from worker import bootstrap
from worker.application.errors import SourceRefused
from worker.application.ports import FetchedClient, ScanPage
from worker.application.resync import Resynchronizer, ResyncPolicy
from worker.config import Settings
from worker.roles.runtime import IdleClock, Stopper

A, B, C = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(custom_fields={"Region__c": "string", "Active__c": "picklist"}, person_accounts=True,
                        page_size=50, bulk_page_size=40) as server:
        yield server


@pytest.fixture
def settings(worker_env: dict[str, str], fake: FakeSalesforce) -> Settings:
    s = settings_for(worker_env, WORKER_SALESFORCE__AUTH="session", WORKER_SALESFORCE__SESSION_ID="token",
                     WORKER_SALESFORCE__INSTANCE_URL=fake.url, WORKER_RETRY__MAX_ATTEMPTS="1",
                     WORKER_RESYNC__POLL_INTERVAL_S="0.05", WORKER_RESYNC__SCAN_POLL_S="0.05",
                     WORKER_RESYNC__BACKOFF_S="0.1", WORKER_SALESFORCE__BULK_PAGE_SIZE="40")
    create_worker_topics(s)
    return s


@pytest.fixture
def app(settings: Settings) -> Iterator[bootstrap.App]:
    app = bootstrap.bootstrap(settings)
    yield app
    app.close()


def ingest(settings: Settings, changes: list[tuple[bytes, bytes]]) -> None:
    """Produce CDC changes and run ingest until it is idle (everything consumed and committed)."""
    produce(settings.kafka.bootstrap_servers, settings.kafka.cdc_topic, changes)
    app = bootstrap.bootstrap(settings)
    try:
        assert bootstrap.ingest_loop(app, Stopper(), IdleClock(1.0)).run() == 0
    finally:
        app.close()


def resyncer(app: bootstrap.App, worker: str = "w1", source: Any = None, **policy: Any) -> Resynchronizer:
    return Resynchronizer(bootstrap.resync_queue(app), source or app.client_source, app.new_batch, app.rule,
                          worker_id=worker, policy=ResyncPolicy(**{"backoff_s": 0.1, **policy}))


def drain(resync: Resynchronizer, limit: int = 200) -> int:
    steps = 0
    while steps < limit:
        report = resync.step()
        steps += 1
        if not report.worked and not report.waiting:
            return steps
    raise AssertionError("the resync never ran out of work")


def latest_details(dsn: str, client_id: str) -> dict[str, Any]:
    """The client's details as its whole stream says (rehydrated from the store, not a cache)."""
    from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
    from worker.application.unit_of_work import ClientBatch

    pool = make_pool(dsn, 1, 5.0)
    try:
        batch = ClientBatch(PostgresEventStore(pool), snapshot_interval=100, worker_version="test")
        return batch.get(client_id).details.to_dict()
    finally:
        pool.close()


def stream(dsn: str, client_id: str) -> list[str]:
    return [t for (t,) in rows(dsn, "SELECT event_type FROM events WHERE stream_id = %s ORDER BY version",
                               (client_id,))]


class Interleaving:
    """A ClientSource that runs ``between`` after Salesforce answered and before the answer is applied."""

    def __init__(self, inner: Any, between: Callable[[], None]) -> None:
        self._inner, self._between = inner, between

    def fetch_clients(self, ids: Sequence[str], extra: Collection[str] = ()) -> dict[str, FetchedClient]:
        answer = self._inner.fetch_clients(ids, extra)
        between, self._between = self._between, lambda: None
        between()
        return answer

    def start_scan(self, extra: Collection[str] = ()) -> str:
        return str(self._inner.start_scan(extra))

    def scan_page(self, scan_id: str, cursor: str | None) -> ScanPage | None:
        return self._inner.scan_page(scan_id, cursor)  # type: ignore[no-any-return]

    def usage(self) -> Any:
        return self._inner.usage()


def test_a_resync_keeps_status_extra_and_person_name_when_salesforce_agrees_and_changes_them_when_not(
    settings: Settings, app: bootstrap.App, fake: FakeSalesforce,
) -> None:
    f = CdcFactory()
    person = {"Salutation": "Dr.", "FirstName": "Ada", "LastName": "Lovelace"}
    ingest(settings, [f.create(A, Name=person, Active__c="Yes", Region__c="EU", Type="Customer - Direct")])
    dsn = settings.postgres.url.get_secret_value()
    before = latest_details(dsn, A)
    assert before["extra"]["Region__c"] == "EU" and before["active"] == "Yes"
    fake.add(A, Name="Dr. Ada Lovelace", Salutation="Dr.", FirstName="Ada", LastName="Lovelace", Active__c="Yes",
             Region__c="EU", Type="Customer - Direct", IsPersonAccount=True)
    bootstrap.resync_queue(app).request([A], "operator")
    drain(resyncer(app))
    assert latest_details(dsn, A) == before, "a resync where Salesforce agrees must change nothing"
    assert stream(dsn, A) == ["ClientRegistered"]

    fake.advance(60)
    fake.update(A, Active__c="No", Region__c="US", FirstName="Augusta")
    bootstrap.resync_queue(app).request([A], "operator")
    drain(resyncer(app))
    after = latest_details(dsn, A)
    assert stream(dsn, A)[-1] == "ClientResynchronized"
    assert after["active"] == "No" and after["extra"]["Region__c"] == "US"
    assert after["extra"]["PersonName"]["FirstName"] == "Augusta" and after["name"] == "Dr. Augusta Lovelace"
    status = rows(dsn, "SELECT payload->>'status' FROM events WHERE stream_id = %s ORDER BY version DESC LIMIT 1",
                  (A,))
    assert status == [("inactive",)]
    assert rows(dsn, "SELECT count(*) FROM resync_requests") == [(0,)]


def test_fields_the_org_does_not_have_are_kept_not_wiped(
    settings: Settings, app: bootstrap.App, fake: FakeSalesforce,
) -> None:
    f = CdcFactory()
    ingest(settings, [f.create(A, Legacy__c="kept", Region__c="EU")])
    fake.add(A, Name="Client 1AAA", Region__c="EU", Active__c="Yes", Type="Customer - Direct")
    bootstrap.resync_queue(app).request([A], "operator")
    drain(resyncer(app))
    details = latest_details(settings.postgres.url.get_secret_value(), A)
    assert details["extra"]["Legacy__c"] == "kept"  # not in the org's describe: never read, never wiped


def test_a_change_applied_between_the_read_and_its_commit_survives(
    settings: Settings, app: bootstrap.App, fake: FakeSalesforce,
) -> None:
    f = CdcFactory()
    ingest(settings, [f.create(A, Phone="1")])
    fake.set_time(_utc(1_699_000_000))  # Salesforce's record predates the change below
    fake.add(A, Name="Client 1AAA", Phone="1", Active__c="Yes", Type="Customer - Direct")
    dsn = settings.postgres.url.get_secret_value()

    def newer_change() -> None:
        ingest(settings, [f.update(A, Phone="2")])
        fake.set_time(_utc(1_800_000_000))
        fake.update(A, Phone="2")

    bootstrap.resync_queue(app).request([A], "operator")
    resync = resyncer(app, source=Interleaving(app.client_source, newer_change))
    drain(resync)
    assert latest_details(dsn, A)["phone"] == "2"
    assert rows(dsn, "SELECT count(*) FROM resync_requests") == [(0,)]
    assert fake.count("composite") == 2  # the stale read was refused and read again


def test_a_change_held_back_during_a_read_renews_the_request_and_is_not_lost(
    settings: Settings, app: bootstrap.App, fake: FakeSalesforce,
) -> None:
    f = CdcFactory()
    ingest(settings, [f.create(A, Phone="1"), f.gap([A])])
    dsn = settings.postgres.url.get_secret_value()
    fake.set_time(_utc(1_699_000_000))
    fake.add(A, Name="Client 1AAA", Phone="1", Active__c="Yes", Type="Customer - Direct")

    def held_back_change() -> None:
        ingest(settings, [f.update(A, Phone="3")])  # the client is dirty: held back, the request renewed
        fake.set_time(_utc(1_800_000_000))
        fake.update(A, Phone="3")

    drain(resyncer(app, source=Interleaving(app.client_source, held_back_change)))
    assert latest_details(dsn, A)["phone"] == "3"
    assert rows(dsn, "SELECT count(*) FROM resync_requests") == [(0,)]


def test_replicas_claim_disjoint_requests_and_a_renewed_request_outlives_an_old_completion(
    app: bootstrap.App, settings: Settings,
) -> None:
    queue = bootstrap.resync_queue(app)
    ids = [f"001{n:012d}AAA" for n in range(10)]
    queue.request(ids, "test")
    first = queue.claim_resyncs("w1", 6, 60)
    second = queue.claim_resyncs("w2", 6, 60)
    assert len(first) == 6 and len(second) == 4
    assert not {c.client_id for c in first} & {c.client_id for c in second}
    assert queue.claim_resyncs("w3", 10, 60) == []

    queue.request([first[0].client_id], "renewed while claimed")
    batch = app.new_batch()
    batch.resync_completed(first[0].client_id, first[0].generation)
    batch.commit()
    dsn = settings.postgres.url.get_secret_value()
    assert rows(dsn, "SELECT reason, claimed_by FROM resync_requests WHERE client_id = %s",
                (first[0].client_id,)) == [("renewed while claimed", None)]


def test_a_redelivered_overflow_queues_one_full_resync(settings: Settings, app: bootstrap.App) -> None:
    f = CdcFactory()
    overflow = f.overflow()
    ingest(settings, [overflow])
    ingest(settings, [overflow])  # the same change again (a replay)
    queue = bootstrap.resync_queue(app)
    assert queue.request_full("an operator", None) is False  # one is pending already: absorbed
    assert rows(settings.postgres.url.get_secret_value(),
                "SELECT count(*) FROM full_resync_requests WHERE completed_at IS NULL") == [(1,)]


def test_a_record_salesforce_refuses_fails_alone_is_capped_and_never_retried_hot(
    settings: Settings, app: bootstrap.App, fake: FakeSalesforce,
) -> None:
    for cid in (A, B, C):
        fake.add(cid, Name=f"Client {cid[-4:]}", Active__c="Yes")

    class RefusesB:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def fetch_clients(self, ids: Sequence[str], extra: Collection[str] = ()) -> dict[str, FetchedClient]:
            if B in ids:
                raise SourceRefused("HTTP 400 MALFORMED_ID: bad id", code="MALFORMED_ID")
            return self._inner.fetch_clients(ids, extra)  # type: ignore[no-any-return]

        def usage(self) -> Any:
            return None

    queue = bootstrap.resync_queue(app)
    queue.request([A, B, C], "test")
    resync = resyncer(app, source=RefusesB(app.client_source), max_attempts=2, backoff_s=0.01,
                      failing_retry_s=3600)
    resync.step()
    dsn = settings.postgres.url.get_secret_value()
    assert stream(dsn, A) == ["ClientResynchronized"] and stream(dsn, C) == ["ClientResynchronized"]
    assert rows(dsn, "SELECT client_id, attempts FROM resync_requests") == [(B, 1)]
    wait_for(lambda: queue.status(2, 10).due == 1, what="B to be due again after its backoff")
    drain(resync)
    status = queue.status(2, 10)
    assert status.failing_count == 1 and status.failing[0].client_id == B
    assert "MALFORMED_ID" in (status.failing[0].last_error or "")
    assert queue.claim_resyncs("w9", 10, 60) == []  # failing: next read in an hour, not now


def test_refused_credentials_keep_the_role_up_and_unready_until_they_work(
    settings: Settings, fake: FakeSalesforce, caplog: pytest.LogCaptureFixture,
) -> None:
    app = bootstrap.bootstrap(settings)
    fake.add(A, Name="Acme", Active__c="Yes")
    bootstrap.resync_queue(app).request([A], "test")
    fake.revoke("token")  # the configured session id: no refresh can renew it
    stopper = Stopper()
    role = bootstrap.resync_role(app, stopper, IdleClock(None))
    caplog.set_level(logging.ERROR, "worker.resync")
    try:
        with running(role) as result:
            wait_for(lambda: not app.health.report("ready")[0], what="the role to report unready")
            assert "refused the credentials" in app.health.report("ready")[1]["checks"]["resync"]["detail"]
            assert any("refused the credentials" in r.getMessage() for r in caplog.records)
            fake.accept_sessions()  # an operator fixed the credentials
            dsn = settings.postgres.url.get_secret_value()
            wait_for(lambda: rows(dsn, "SELECT count(*) FROM resync_requests") == [(0,)], timeout_s=60,
                     what="the read once the credentials work")
            assert app.health.report("ready")[1]["checks"]["resync"]["ok"]
            stopper.stop()
        assert result["code"] == 0
    finally:
        app.close()


def test_a_full_resync_pages_through_one_bulk_job_resumes_after_a_restart_and_reads_unseen_clients(
    settings: Settings, app: bootstrap.App, fake: FakeSalesforce,
) -> None:
    ids = fake.generate(200, seed=7)
    f = CdcFactory()
    ingest(settings, [f.create(A), f.overflow()])  # A exists here but not in Salesforce
    dsn = settings.postgres.url.get_secret_value()
    first = resyncer(app, worker="w1")
    pages = 0
    for _ in range(20):  # start the job, then apply two pages of 40
        report = first.step()
        pages += report.pages
        if pages == 2:
            break
    assert pages == 2
    # w1 dies here; its lease runs out and w2 resumes after the last committed page
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE full_resync_requests SET claimed_until = now() - interval '1 second'")
    second = resyncer(app, worker="w2")
    drain(second)
    assert fake.count("bulk") == 1, "one query job for the whole resync"
    assert fake.count("bulkResults") == 5, "200 records in pages of 40: none read twice"
    assert rows(dsn, "SELECT count(DISTINCT stream_id) FROM events WHERE event_type = 'ClientResynchronized'"
                     " AND stream_id <> %s", (A,)) == [(200,)]
    assert stream(dsn, A)[-1] == "ClientResynchronized"  # unseen by the scan, read alone: gone
    assert rows(dsn, "SELECT payload->>'deleted' FROM events WHERE stream_id = %s ORDER BY version DESC LIMIT 1",
                (A,)) == [("true",)]
    assert rows(dsn, "SELECT phase FROM full_resync_requests") == [("done",)]
    assert set(ids) <= {r[0] for r in rows(dsn, "SELECT stream_id FROM events")}


def test_a_merged_record_is_deleted_and_its_master_read(
    settings: Settings, app: bootstrap.App, fake: FakeSalesforce,
) -> None:
    f = CdcFactory()
    ingest(settings, [f.create(A), f.create(B)])
    fake.add(A, Name="Master", Active__c="Yes")
    fake.add(B, Name="Loser", Active__c="Yes")
    fake.advance(60)
    fake.merge(A, B)
    bootstrap.resync_queue(app).request([B], "test")
    drain(resyncer(app))
    dsn = settings.postgres.url.get_secret_value()
    assert rows(dsn, "SELECT payload->>'deleted', metadata->>'merged_into' FROM events_with_metadata"
                     " WHERE stream_id = %s ORDER BY version DESC LIMIT 1", (B,)) == [("true", A)]
    assert latest_details(dsn, A)["name"] == "Master"


def test_ingest_never_calls_salesforce_and_the_resync_role_heals_a_gap(
    settings: Settings, fake: FakeSalesforce,
) -> None:
    f = CdcFactory()
    fake.add(A, Name="Acme from Salesforce", Phone="+1 555", Active__c="Yes")
    ingest(settings, [f.create(A), f.gap([A]), f.update(A, Phone="held back")])
    assert fake.requests == [], "ingest must not call Salesforce"
    dsn = settings.postgres.url.get_secret_value()
    assert stream(dsn, A) == ["ClientRegistered", "ClientMarkedForResync"]
    fake.down()
    app = bootstrap.bootstrap(settings)
    stopper = Stopper()
    try:
        with running(bootstrap.resync_role(app, stopper, IdleClock(None))) as result:
            wait_for(lambda: rows(dsn, "SELECT count(*) FROM resync_requests") == [(1,)], what="the request")
            fake.up()
            wait_for(lambda: rows(dsn, "SELECT count(*) FROM resync_requests") == [(0,)], timeout_s=60,
                     what="the resync to complete after Salesforce returned")
            stopper.stop()
        assert result["code"] == 0
    finally:
        app.close()
    assert stream(dsn, A)[-1] == "ClientResynchronized"
    assert latest_details(dsn, A)["phone"] == "+1 555"


def _utc(seconds: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)


def test_without_credentials_resync_says_it_is_disabled_everywhere(
    worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from worker.entrypoints.cli import main

    settings = settings_for(worker_env)  # WORKER_SALESFORCE__AUTH=none, the default
    app = bootstrap.bootstrap(settings)
    try:
        bootstrap.resync_queue(app).request([A, B], "a gap")
        stopper = Stopper()
        role = bootstrap.resync_role(app, stopper, IdleClock(0.1))
        caplog.set_level(logging.WARNING, "worker.resync")
        assert role.run() == 0
        assert any("resync is disabled" in r.getMessage() and "2 client(s) wait" in r.getMessage()
                   for r in caplog.records)
        _, report = app.health.report("ready")
        assert report["checks"]["resync"]["detail"].startswith("disabled: no Salesforce credentials")
    finally:
        app.close()
    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)
    assert main(["resync", "status"]) == 0
    shown = capsys.readouterr().out
    assert "DISABLED: no Salesforce credentials" in shown and "backlog         2 client(s)" in shown
    assert main(["run", "resync"]) == 1
    assert "cannot read Salesforce" in capsys.readouterr().err
