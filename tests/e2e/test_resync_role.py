"""The resync role as deployed: its own process, a full resync of 100,000 Accounts through one Bulk API query job
while ingest keeps committing, killed with SIGKILL halfway, and resumed by the next process where it stopped."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

from tests.cdc_factory import CdcFactory
from tests.conftest import wait_for
from tests.e2e.conftest import Cli, stop
from tests.fakes.salesforce_server import FakeSalesforce
from tests.harness import produce, rows

ACCOUNTS = 100_000
PAGE = 5_000


def committed(worker_env: dict[str, str]) -> int:
    """Offsets the ingest group has committed, over every partition of the CDC topic."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"],
                         "group.id": worker_env["WORKER_KAFKA__INGEST_GROUP"], "enable.auto.commit": False})
    try:
        topic = worker_env["WORKER_KAFKA__CDC_TOPIC"]
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def full_resync(dsn: str) -> tuple[str, int, int]:
    found = rows(dsn, "SELECT phase, pages, records FROM full_resync_requests ORDER BY id DESC LIMIT 1")
    return found[0] if found else ("none", 0, 0)


def test_a_full_resync_of_100k_accounts_never_holds_ingest_and_resumes_after_kill_9(
    cli: Cli, worker_env: dict[str, str],
) -> None:
    dsn = worker_env["WORKER_POSTGRES__URL"]
    with FakeSalesforce(custom_fields={"Region__c": "string", "Active__c": "picklist"}) as salesforce:
        ids = salesforce.generate(ACCOUNTS, seed=3)
        env: dict[str, Any] = dict(
            WORKER_SALESFORCE__AUTH="session", WORKER_SALESFORCE__SESSION_ID="token",
            WORKER_SALESFORCE__INSTANCE_URL=salesforce.url, WORKER_SALESFORCE__BULK_PAGE_SIZE=str(PAGE),
            WORKER_RESYNC__LEASE_S="3", WORKER_RESYNC__SCAN_POLL_S="0.2", WORKER_RESYNC__POLL_INTERVAL_S="0.2",
        )
        assert "full resync queued" in cli("resync", "--all", **env).stdout

        # CDC keeps flowing during the resync: creates of clients Salesforce does not have
        producing, f = threading.Event(), CdcFactory()
        produced: list[int] = []

        def feed() -> None:
            n = 0
            while not producing.wait(0.05):
                n += 1
                produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"],
                        [f.create(f"003{n:012d}AAA")])
                produced.append(n)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        ingest = cli.start("run", "ingest", **env)
        resync = cli.start("run", "resync", **env)
        try:
            wait_for(lambda: full_resync(dsn)[1] >= 2, timeout_s=180, what="the first pages of the full resync")
            before = committed(worker_env)
            half = ACCOUNTS // PAGE // 2
            wait_for(lambda: full_resync(dsn)[1] >= half, timeout_s=300, what="half of the full resync")
            assert committed(worker_env) > before, "ingest must keep committing while the full resync runs"
            os.kill(resync.pid, signal.SIGKILL)
            resync.wait(30)
            phase, pages_at_kill, _ = full_resync(dsn)
            assert phase == "scanning" and pages_at_kill < ACCOUNTS // PAGE
            results_at_kill = salesforce.count("bulkResults")

            resync = cli.start("run", "resync", **env)
            wait_for(lambda: full_resync(dsn)[0] == "done", timeout_s=400, what="the resumed full resync to finish")
        finally:
            producing.set()
            feeder.join(10)
            for process in (resync, ingest):
                process.send_signal(signal.SIGTERM)
            codes = [stop(process)[0] for process in (resync, ingest)]
        assert codes == [0, 0]
        assert salesforce.count("bulk") == 1, "one query job: the restarted role resumed it, it did not start over"
        # the pages after the kill, plus at most the page that was in flight when the process died
        assert salesforce.count("bulkResults") - results_at_kill <= ACCOUNTS // PAGE - pages_at_kill + 1
    resynced = rows(dsn, "SELECT count(DISTINCT stream_id) FROM events WHERE event_type = 'ClientResynchronized'"
                         " AND stream_id = ANY(%s)", (ids,))[0][0]
    assert resynced == ACCOUNTS
    status = json.loads(cli("resync", "status", "--json").stdout)
    assert status["full_resyncs"] == [] and status["failing_count"] == 0
    assert produced, "the feeder produced CDC during the resync"
