"""The foundation against the real servers: migrations, topics, a message through the broker."""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.conftest import wait_for
from worker.adapters.kafka.admin import create_topics, worker_topics
from worker.adapters.postgres.migrate import available, migrate
from worker.config import KafkaSettings


def test_a_message_produced_through_the_broker_is_consumed_with_its_key_and_headers(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.roundtrip"
    outcomes = create_topics(
        AdminClient({"bootstrap.servers": kafka_bootstrap}), worker_topics(KafkaSettings(cdc_topic=topic))[:1]
    )
    assert outcomes[0].status == "created"
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=b"001xx000003DGb2AAG", value=b"{}", headers=[("schema_id", b"abc")])
    assert producer.flush(30) == 0
    consumer = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic_prefix}-g", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert message.key() == b"001xx000003DGb2AAG"
        assert message.headers() == [("schema_id", b"abc")]
    finally:
        consumer.close()


def test_a_tests_topics_and_groups_are_deleted_after_it_and_nobody_elses(kafka_bootstrap: str) -> None:
    """What `topic_prefix` does once a test is over: left behind, topics pile up in the local broker."""
    from tests.harness import delete_prefixed

    ours, theirs = f"t{uuid.uuid4().hex[:10]}", f"t{uuid.uuid4().hex[:10]}"
    names = [f"{ours}.a", f"{ours}-b", f"{ours}x.c", f"{theirs}.d"]  # "{ours}x": another prefix that starts alike
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    create_topics(admin, [spec for name in names for spec in worker_topics(KafkaSettings(cdc_topic=name))[:1]])
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{ours}-group"})
    consumer.commit(offsets=[TopicPartition(f"{ours}.a", 0, 0)], asynchronous=False)  # the group now exists
    consumer.close()

    def groups() -> set[str]:
        return {g.group_id for g in admin.list_consumer_groups(request_timeout=10).result(10).valid}

    assert f"{ours}-group" in groups()
    try:
        assert sorted(delete_prefixed(kafka_bootstrap, ours)) == [f"{ours}-b", f"{ours}.a"]
        # the controller has taken the deletion; the broker's metadata follows a moment later
        def gone() -> set[str] | None:
            left = set(admin.list_topics(timeout=10).topics)
            return None if {f"{ours}.a", f"{ours}-b"} & left else left

        left = wait_for(gone, 30, "the deleted topics gone from the broker's metadata")
        assert {f"{ours}x.c", f"{theirs}.d"} <= left
        assert f"{ours}-group" not in groups()
    finally:
        delete_prefixed(kafka_bootstrap, f"{ours}x")
        delete_prefixed(kafka_bootstrap, theirs)


def test_migrate_twice_leaves_one_applied_set(database_url: str) -> None:
    applied, before = migrate(database_url)
    assert applied == [] and [m.version for m in before] == [m.version for m in available()]
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in available()]


def test_concurrent_migrations_apply_each_file_once(server_database_url: str) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server_database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(migrate, [url] * 4))
        applied_counts = sorted(len(applied) for applied, _ in results)
        assert applied_counts == [0, 0, 0, len(available())]
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(available()),)
    finally:
        with psycopg.connect(server_database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_topics_create_twice_creates_once_and_reports_a_partition_mismatch(
    worker_env: dict[str, str], kafka_bootstrap: str, topic_prefix: str
) -> None:
    env = {**worker_env, "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "worker.entrypoints.cli", "topics", "create", "--json"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count('"created"') == 4
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count('"exists"') == 4 and '"created"' not in second.stdout
    more = subprocess.run(
        cmd, env={**env, "WORKER_KAFKA__PARTITIONS": "8"}, capture_output=True, text=True, timeout=120
    )
    assert more.returncode == 1
    assert "has 4 partitions, configured 8" in more.stdout


def test_config_show_with_a_bad_setting_exits_non_zero_with_one_readable_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.entrypoints.cli", "config", "show"],
        env={"WORKER_KAFKA__BATCH_SIZE": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "WORKER_KAFKA__BATCH_SIZE" in lines[0] and "Traceback" not in result.stderr
