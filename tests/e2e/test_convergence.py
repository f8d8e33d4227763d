"""Convergence on Salesforce, end to end: the fake org holds the truth for 2,000 Accounts (custom fields, person
accounts, deletions, merges); the CDC history that ends in that truth is damaged (5 % of events dropped, some
replaced by poison bytes or GAP_* events, one GAP_OVERFLOW, part of the topic expired after ingest committed
past the start of it, Salesforce down for a while). Ingest, resync, relay, projector and reconcile run as the
`worker` CLI; afterwards every client of the read model equals Salesforce's record, the dead-letter topic holds
exactly the poison, and nothing waits for a resync."""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from tests.cdc_factory import CdcFactory
from tests.conftest import wait_for
from tests.e2e.conftest import Cli, stop
from tests.fakes.salesforce.org import START, to_18
from tests.fakes.salesforce_server import FakeSalesforce
from tests.harness import consume_all, produce, rows

N = 2000
POISON = [b"\x00\xff poison %d" % n for n in range(5)]
STATUS = {"Yes": "active", "No": "inactive"}


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(custom_fields={"Region__c": "string", "Active__c": "picklist"}, person_accounts=True,
                        bulk_page_size=500) as server:
        yield server


class History:
    """CDC messages and the fake org's writes, in step: every write happens at its message's commit time."""

    def __init__(self, fake: FakeSalesforce) -> None:
        self.fake = fake
        self.start_ms = int(START.timestamp() * 1000)
        self.cdc = CdcFactory(start_ms=self.start_ms)
        self.messages: list[tuple[bytes, bytes]] = []
        self.gaps: set[int] = set()  # indexes of GAP_* events (their change is only in Salesforce)

    def _at_next(self) -> None:
        self.fake.set_time(datetime.fromtimestamp((self.start_ms + 1000 * len(self.messages)) / 1000, UTC))

    def create(self, cid: str, person: bool, **fields: Any) -> None:
        self._at_next()
        if person:
            name = {"Salutation": "Dr.", "FirstName": "Ada", "LastName": f"L{cid[-7:-3]}"}
            self.fake.add(cid, Name=f"Dr. Ada {name['LastName']}", IsPersonAccount=True,
                          **{k: v for k, v in name.items()}, **fields)
            self.messages.append(self.cdc.create(cid, Name=name, **fields))
        else:
            self.fake.add(cid, Name=f"Client {cid[-7:-3]}", **fields)
            self.messages.append(self.cdc.create(cid, Name=f"Client {cid[-7:-3]}", **fields))

    def update(self, cid: str, as_gap: bool = False, **fields: Any) -> None:
        self._at_next()
        self.fake.update(cid, **fields)
        if as_gap:
            self.gaps.add(len(self.messages))
            self.messages.append(self.cdc.gap([cid], random.Random(cid).choice(["GAP_UPDATE", "GAP_CREATE"])))
        else:
            self.messages.append(self.cdc.update(cid, **fields))

    def delete(self, cid: str, master: str | None = None) -> None:
        self._at_next()
        self.fake.store.delete(cid, master_id=master)
        self.messages.append(self.cdc.delete(cid))


def build_truth(fake: FakeSalesforce, rng: random.Random) -> tuple[History, list[str]]:
    h = History(fake)
    ids = [to_18(f"001C{n:011d}") for n in range(N)]
    for n, cid in enumerate(ids):
        h.create(cid, person=n % 10 == 0, Type=rng.choice(["Customer - Direct", "Customer - Channel", "Prospect"]),
                 Industry=rng.choice(["Banking", "Retail", "Energy"]), Phone=f"+1 555 {n:04d}",
                 Region__c=rng.choice(["EU", "US", "APAC"]), Active__c=rng.choice(["Yes", "No"]))
    for cid in rng.sample(ids, 900):
        change = rng.choice([{"Phone": f"+33 {rng.randint(0, 10**6)}"}, {"Region__c": rng.choice(["EU", "LATAM"])},
                             {"Active__c": rng.choice(["Yes", "No"])}, {"Industry": None}])
        h.update(cid, as_gap=len(h.messages) > 2600 and rng.random() < 0.08, **change)
    doomed = rng.sample(ids, 100)
    for cid in doomed[:60]:
        h.delete(cid)
    for master, loser in zip(doomed[60:80], doomed[80:], strict=True):
        h.delete(loser, master=master)  # a merge: the loser deleted with MasterRecordId, the master updated
        h.update(master, Phone="merged")
    return h, ids


def damage(messages: list[tuple[bytes, bytes]], gaps: set[int], rng: random.Random,
           start: int) -> list[tuple[bytes, bytes]]:
    """From ``start`` on: 5 % dropped, five replaced by poison bytes, one GAP_OVERFLOW in the middle."""
    out = []
    poison = iter(POISON)
    targets = set(rng.sample([i for i in range(start, len(messages)) if i not in gaps], len(POISON)))
    for i, message in enumerate(messages[start:], start):
        if i in targets:
            out.append((message[0], next(poison)))
        elif i not in gaps and rng.random() < 0.05:
            continue
        else:
            out.append(message)
        if i == (start + len(messages)) // 2:
            out.append(CdcFactory(start_ms=int(START.timestamp() * 1000) + 1000 * i).overflow())
    return out


def expire(servers: str, topic: str) -> None:
    """Everything now in ``topic`` is deleted (the log start moves to the end), as retention would."""
    admin = AdminClient({"bootstrap.servers": servers})
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    from confluent_kafka import Consumer

    probe = Consumer({"bootstrap.servers": servers, "group.id": "probe"})
    try:
        ends = [TopicPartition(topic, p, probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                for p in meta.partitions]
    finally:
        probe.close()
    for future in admin.delete_records([tp for tp in ends if tp.offset > 0]).values():
        future.result(timeout=30)


def expected_row(record: dict[str, Any]) -> dict[str, Any]:
    kind = record.get("Type") or ""
    status = "prospect" if kind.startswith("Prospect") else STATUS.get(record.get("Active__c") or "", "unknown")
    return {"deleted": bool(record["IsDeleted"]), "name": record.get("Name"), "type": record.get("Type"),
            "industry": record.get("Industry"), "phone": record.get("Phone"), "active": record.get("Active__c"),
            "region": record.get("Region__c"), "status": status}


def test_the_read_model_converges_on_salesforce_whatever_happened_to_the_cdc_stream(
    cli: Cli, fake: FakeSalesforce, worker_env: dict[str, str],
) -> None:
    started = time.monotonic()
    rng = random.Random(20261124)
    history, ids = build_truth(fake, rng)
    cli.env.update({
        "WORKER_SALESFORCE__AUTH": "session", "WORKER_SALESFORCE__SESSION_ID": "token",
        "WORKER_SALESFORCE__INSTANCE_URL": fake.url, "WORKER_SALESFORCE__BULK_PAGE_SIZE": "500",
        "WORKER_RESYNC__POLL_INTERVAL_S": "0.2", "WORKER_RESYNC__SCAN_POLL_S": "0.2", "WORKER_RESYNC__BACKOFF_S": "0.2",
        "WORKER_RETRY__MAX_ATTEMPTS": "2", "WORKER_RETRY__BREAKER_RESET_TIMEOUT_S": "1",
    })
    servers, topic = worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"]
    dsn = worker_env["WORKER_POSTGRES__URL"]

    # 1. ingest reads the start of the history; the next part expires before it is read
    produce(servers, topic, history.messages[:600])
    cli("run", "ingest", "--exit-when-idle", "1")
    produce(servers, topic, history.messages[600:1000])
    expire(servers, topic)
    produce(servers, topic, damage(history.messages, history.gaps, rng, 1000))

    # 2. every role runs; Salesforce is down for a while at first
    fake.down()
    asked = len(fake.requests)
    process = cli.start("run", "all")
    try:
        wait_for(lambda: rows(dsn, "SELECT count(*) FROM reconcile_requests") == [(1,)], timeout_s=60,
                 what="the retention cliff's reconcile request")
        # the poison's schema cannot be looked up while Salesforce is down: ingest waits too (transient)
        wait_for(lambda: len(fake.requests) >= asked + 5, timeout_s=60, what="calls refused while it is down")
        fake.up()
        wait_for(lambda: rows(dsn, "SELECT count(*) FROM full_resync_requests WHERE completed_at IS NULL"
                                   " UNION ALL SELECT count(*) FROM resync_requests") == [(0,), (0,)],
                 timeout_s=120, what="the overflow's full resync and every resync")
        # 3. the reconcile the cliff asked for (incremental, from the last change applied), then a full one
        first = json.loads(cli("reconcile", "--json", check=False).stdout)
        assert first["mode"] == "incremental"
        final = cli("reconcile", "--full", "--json", "--wait-timeout", "90", check=False)
        assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
        # ingest may still queue reads for gap events at the tail of the topic: the role drains those too
        wait_for(lambda: rows(dsn, "SELECT count(*) FROM resync_requests") == [(0,)], timeout_s=120,
                 what="the resync backlog to drain")
    finally:
        process.send_signal(signal.SIGTERM)
        code, err = stop(process)
    assert code == 0, err[-3000:]

    # 4. every client equals Salesforce's record, field by field
    summary = {r[0]: {"deleted": r[1], "name": r[2], "type": r[3], "industry": r[4], "phone": r[5], "active": r[6],
                      "region": (r[7] or {}).get("Region__c"), "status": r[8]}
               for r in rows(dsn, "SELECT client_id, deleted, name, type, industry, phone, active, extra, status"
                                  " FROM client_summary WHERE registered OR deleted")}
    truth = {cid: expected_row(fake.record(cid) or {}) for cid in ids}
    differing = {cid: (summary.get(cid), want) for cid, want in truth.items()
                 if summary.get(cid) != want and not (want["deleted"] and summary.get(cid, {}).get("deleted"))}
    assert not differing, f"{len(differing)} clients differ, e.g. {list(differing.items())[:3]}"
    assert set(summary) <= set(ids)
    dead = sorted(m.value() for m in consume_all(servers, f"{topic}.dlq"))
    assert dead == sorted(POISON)
    assert rows(dsn, "SELECT count(*) FROM resync_requests") == [(0,)]
    assert time.monotonic() - started < 240
