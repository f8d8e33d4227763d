"""`dlq replay` against the real broker and database: each record its own outcome; the audit read, the publish
and the audit write are atomic, so two replays at once never both publish a record."""

from __future__ import annotations

import threading

import pytest

from tests.harness import consume_all, create_worker_topics, rows, settings_for
from worker.adapters.kafka import dlq
from worker.adapters.kafka.dlq_reader import DeadLetterRecord
from worker.adapters.kafka.dlq_replay import DeadLetterReplayer, ReplayOutcome
from worker.adapters.kafka.producer import make_producer
from worker.adapters.postgres.dlq_audit import ReplayAudit
from worker.config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(worker_env: dict[str, str]) -> Settings:
    s = settings_for(worker_env)
    create_worker_topics(s)
    return s


def dead_letter(settings: Settings, offset: int, original_topic: str) -> DeadLetterRecord:
    headers = {dlq.H_TOPIC: original_topic, dlq.H_PARTITION: "0", dlq.H_OFFSET: str(100 + offset),
               dlq.H_CLASS: "worker.adapters.salesforce.errors.UnknownSchema", dlq.H_STAGE: "parse"}
    return DeadLetterRecord(settings.kafka.cdc_dlq_topic, 0, offset, 0, f"key-{offset}".encode(),
                            f"value-{offset}".encode(), tuple((k, v.encode()) for k, v in headers.items()))


def replayer(settings: Settings, flush_timeout_s: float = 30.0) -> DeadLetterReplayer:
    pg = settings.postgres
    return DeadLetterReplayer(make_producer(settings.kafka), ReplayAudit(pg.url.get_secret_value()),
                              settings.dlq_max_replays, flush_timeout_s=flush_timeout_s)


def run(replay: DeadLetterReplayer, settings: Settings, records: list[DeadLetterRecord]) -> dict[str, str]:
    outcomes = replay.run(settings.kafka.cdc_dlq_topic, records, dry_run=False, force=False, rate=None,
                          operator="test", note=None)
    return {o.record.id: o.result for o in outcomes}


def test_one_unacknowledged_record_fails_alone_and_a_rerun_republishes_only_it(settings: Settings) -> None:
    # the broker does not create topics on demand: a record for a missing topic is never acknowledged
    good, lost = dead_letter(settings, 0, settings.kafka.cdc_topic), dead_letter(settings, 1, "no-such-topic")
    dsn = settings.postgres.url.get_secret_value()

    assert run(replayer(settings, flush_timeout_s=3), settings, [good, lost]) == {"0@0": "published",
                                                                                 "0@1": "failed"}
    assert rows(dsn, "SELECT dlq_offset, result FROM dlq_replays ORDER BY dlq_offset") == [
        (0, "published"), (1, "failed")]

    assert run(replayer(settings, flush_timeout_s=3), settings, [good, lost]) == {"0@0": "skipped",
                                                                                 "0@1": "failed"}
    assert [m.value() for m in consume_all(settings.kafka.bootstrap_servers, settings.kafka.cdc_topic)] == [
        b"value-0"]


def test_two_replays_of_the_same_record_at_once_publish_it_once(settings: Settings) -> None:
    record = dead_letter(settings, 0, settings.kafka.cdc_topic)
    replayers = [replayer(settings) for _ in range(4)]
    start = threading.Barrier(len(replayers))
    results: list[dict[str, str]] = []
    errors: list[BaseException] = []

    def replay_once(replay: DeadLetterReplayer) -> None:
        start.wait()
        try:
            results.append(run(replay, settings, [record]))
        except BaseException as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=replay_once, args=(r,)) for r in replayers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r["0@0"] for r in results) == ["published", "skipped", "skipped", "skipped"]
    assert rows(settings.postgres.url.get_secret_value(),
                "SELECT count(*) FROM dlq_replays WHERE result = 'published'") == [(1,)]
    assert len(consume_all(settings.kafka.bootstrap_servers, settings.kafka.cdc_topic)) == 1


def test_the_outcome_row_names_the_target() -> None:
    record = DeadLetterRecord("t.dlq", 2, 7, 0, None, b"v", ((dlq.H_TOPIC, b"t"), (dlq.H_PARTITION, b"2"),
                                                           (dlq.H_CLASS, b"a.b.Boom")))
    assert ReplayOutcome(record, "published").row()["target"] == "t[2]"
