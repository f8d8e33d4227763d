"""Offsets committed without waiting, against the real broker: librdkafka answers each such commit once, through
the commit callback, inside a later consume(), and a commit that waits calls no callback (what the fake of
tests/unit/test_consumer_commit.py is built on); BatchConsumer's commits land, and a close commits what is still
unanswered."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.conftest import wait_for
from worker.adapters.kafka.admin import create_topics, worker_topics
from worker.adapters.kafka.consumer import BatchConsumer, consumer_config
from worker.config import KafkaSettings


def _topic(kafka_bootstrap: str, name: str, partitions: int, messages: int) -> None:
    create_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}),
                  worker_topics(KafkaSettings(cdc_topic=name, partitions=partitions))[:1])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(messages):
        producer.produce(name, value=b"x", partition=i % partitions)
    assert producer.flush(30) == 0


def _committed(kafka_bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    reader = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        found = reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in found}


def test_librdkafka_answers_each_commit_that_does_not_wait_once_and_a_commit_that_waits_never(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}.commits"
    _topic(kafka_bootstrap, topic, 2, 20)
    answers: list[tuple[Any, list[tuple[int, int, Any]]]] = []

    def on_commit(error: Any, partitions: list[TopicPartition]) -> None:
        answers.append((error, [(tp.partition, tp.offset, tp.error) for tp in partitions]))

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic_prefix}-raw",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", "on_commit": on_commit})
    consumer.subscribe([topic])
    try:
        wait_for(lambda: (consumer.poll(0.2), consumer.assignment())[1], 60, "the partitions assigned")
        consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
        consumer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 3)], asynchronous=True)
        consumer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 3)], asynchronous=True)
        assert answers == []  # only ever served inside a poll/consume
        wait_for(lambda: (consumer.consume(10, 0.2), len(answers) >= 2)[1], 60, "two commit callbacks")
        for _ in range(3):  # nothing more comes: no answer for the commit that waited
            consumer.consume(10, 0.2)
    finally:
        consumer.close()
    assert answers == [(None, [(0, 4, None), (1, 3, None)])] * 2


def test_a_batch_consumer_commits_without_waiting_and_its_offsets_land(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic, group = f"{topic_prefix}.batches", f"{topic_prefix}-batches"
    _topic(kafka_bootstrap, topic, 2, 40)
    consumer = BatchConsumer(consumer_config(KafkaSettings(bootstrap_servers=kafka_bootstrap), group), [topic])
    seen: list[Any] = []

    def consume_and_commit() -> bool:
        batch = consumer.consume(7, 0.5)
        seen.extend(batch)
        if batch:
            consumer.commit(batch)
        return len(seen) >= 40

    wait_for(consume_and_commit, 60, "40 messages consumed")
    assert len(seen) == 40
    # answered inside consume()
    wait_for(lambda: (consumer.consume(7, 0.2), not consumer._pending)[1], 60, "the commits answered")
    assert consumer._pending == {} and consumer.uncommitted == {}
    assert _committed(kafka_bootstrap, group, topic, 2) == {0: 20, 1: 20}
    # a commit still unanswered when the consumer closes is committed by the close, waiting
    _topic(kafka_bootstrap, f"{topic}2", 1, 5)
    second = BatchConsumer(consumer_config(KafkaSettings(bootstrap_servers=kafka_bootstrap), f"{group}2"),
                           [f"{topic}2"])
    got: list[Any] = []
    wait_for(lambda: (got.extend(second.consume(5, 0.5)), len(got) >= 5)[1], 60, "5 messages consumed")
    second.commit(got)
    assert second._pending == {(f"{topic}2", 0): 5}
    second.close()
    assert _committed(kafka_bootstrap, f"{group}2", f"{topic}2", 1) == {0: 5}
