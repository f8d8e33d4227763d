"""`worker offsets reset` lands where Kafka's own `kafka-consumer-groups --reset-offsets` lands.

Both run as dry runs against the same group on a topic whose record timestamps are known: Kafka's tool is
ConsumerGroupCommand from the kafka-tools jar the stack fetched (KAFKA_LIBS), run with `java`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.e2e.conftest import Cli

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
# records per partition: partition 0 has 10 (one second apart), 1 has 3, 2 has none
RECORDS = {0: 10, 1: 3, 2: 0}
# committed offsets of the stopped group; partition 2 has none
COMMITTED = {0: 7, 1: 1}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


SPECS = [
    ["--to-datetime", iso(T0 + 4_500)],  # p0 -> 5, p1 -> end (no record at or after), p2 -> end
    ["--to-datetime", iso(T0 + 1_000)],  # exactly on a record's timestamp
    ["--to-datetime", iso(T0 - 60_000)],  # before everything -> first offsets
    ["--to-datetime", iso(T0 + 3_600_000)],  # after everything -> end offsets
    ["--shift-by", "-3", "--partitions", "0,1"],  # p0 7 -> 4, p1 1 -> clamped to 0
    ["--shift-by", "2", "--partitions", "0,1"],  # p0 7 -> 9, p1 1 -> 3 (the end)
    ["--shift-by", "100", "--partitions", "0,1"],  # clamped to the end
    ["--to-offset", "2"],
    ["--to-earliest"],
    ["--to-latest"],
]


@pytest.fixture(scope="module")
def kafka_tool() -> list[str]:
    libs = os.environ.get("KAFKA_LIBS")
    if not libs or not (Path(libs) / ".complete").exists():
        pytest.fail("KAFKA_LIBS is not set to the stack's Kafka jars: run the tests with `make test`", False)
    java = shutil.which("java")
    if java is None:
        pytest.fail("java is not on PATH (Java 17 runs the local Kafka)", False)
    return [java, "-cp", f"{libs}/*", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"]


def kafka_plan(tool: list[str], bootstrap: str, group: str, topic: str, spec: list[str]) -> dict[int, int]:
    args = list(spec)
    if "--partitions" in args:  # Kafka's tool names partitions in the topic argument
        at = args.index("--partitions")
        topic = f"{topic}:{args[at + 1]}"
        del args[at:at + 2]
    if args[0] == "--to-datetime":
        args[1] += "Z"  # explicit UTC, as the worker reads a time without a zone
    done = subprocess.run(
        [*tool, "--bootstrap-server", bootstrap, "--group", group, "--topic", topic, "--reset-offsets", *args,
         "--dry-run"], capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[:1500]
    plan = {}
    for line in done.stdout.splitlines():
        cells = line.split()
        if len(cells) == 4 and cells[1] == topic.split(":")[0]:  # GROUP TOPIC PARTITION NEW-OFFSET
            plan[int(cells[2])] = int(cells[3])
    assert plan, f"no plan in Kafka's output:\n{done.stdout}\n{done.stderr[-1000:]}"
    return plan


def worker_plan(cli: Cli, group: str, topic: str, spec: list[str]) -> dict[int, int]:
    shown = json.loads(cli("offsets", "reset", "--group", group, "--topic", topic, *spec, "--json").stdout)
    assert shown["executed"] is False
    return {p["partition"]: p["new"] for p in shown["partitions"]}


def test_resets_choose_the_offsets_kafkas_own_tool_chooses(
    cli: Cli, kafka_tool: list[str], kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}.timed", f"{topic_prefix}-reset-group"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    # records dated 2023: without retention.ms=-1 the broker's retention check (every 5 minutes) may delete them
    # mid-test, since their timestamps are far older than the default 7 days
    admin.create_topics([NewTopic(topic, len(RECORDS), 1, config={"retention.ms": "-1"})])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for partition, count in RECORDS.items():
        for i in range(count):
            producer.produce(topic, value=b"x", partition=partition, timestamp=T0 + i * 1000)
    assert producer.flush(30) == 0
    committer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, p, o) for p, o in COMMITTED.items()], asynchronous=False)
    committer.close()

    for spec in SPECS:
        ours = worker_plan(cli, group, topic, spec)
        theirs = kafka_plan(kafka_tool, kafka_bootstrap, group, topic, spec)
        assert ours == theirs, f"{' '.join(spec)}: worker {ours} vs kafka-consumer-groups {theirs}"
    # and the figures are the ones the comments above promise (so a shared mistake cannot pass)
    assert worker_plan(cli, group, topic, SPECS[0]) == {0: 5, 1: 3, 2: 0}
    assert worker_plan(cli, group, topic, SPECS[4]) == {0: 4, 1: 0}
    # a shift where the group committed nothing: both refuse, naming the partition
    ours_refused = cli("offsets", "reset", "--group", group, "--topic", topic, "--shift-by", "1", check=False)
    assert ours_refused.returncode == 1 and "cannot shift partition 2" in ours_refused.stderr
    theirs_refused = subprocess.run(
        [*kafka_tool, "--bootstrap-server", kafka_bootstrap, "--group", group, "--topic", topic, "--reset-offsets",
         "--shift-by", "1", "--dry-run"], capture_output=True, text=True, timeout=120, check=False)
    assert theirs_refused.returncode != 0 and f"{topic}-2" in theirs_refused.stderr
