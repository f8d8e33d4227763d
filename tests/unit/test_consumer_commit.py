"""Committing after a batch: a commit the group refuses because it rebalanced meanwhile is not a crash (the next
owner redelivers, handling is idempotent); any other commit failure still is."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from tests.harness import StubMessage
from worker.adapters.kafka.consumer import BatchConsumer


class RefusingClient:
    def __init__(self, code: int) -> None:
        self.code = code
        self.calls: list[Any] = []

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.calls.append(offsets)
        raise KafkaException(KafkaError(self.code))


def consumer_with(client: RefusingClient) -> BatchConsumer:
    consumer = BatchConsumer({}, ["t"])
    consumer._consumer = client  # type: ignore[assignment]
    message = StubMessage()
    consumer.assignment = {(message.topic(), message.partition())}
    return consumer


@pytest.mark.parametrize("code", [KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS,
                                  KafkaError.UNKNOWN_MEMBER_ID])
def test_a_commit_refused_by_a_rebalance_is_logged_not_raised(code: int, caplog: pytest.LogCaptureFixture) -> None:
    client = RefusingClient(code)
    consumer_with(client).commit([StubMessage()])
    assert len(client.calls) == 1 and "commit refused by a rebalance" in caplog.text


def test_any_other_commit_failure_still_raises() -> None:
    client = RefusingClient(KafkaError._TRANSPORT)
    with pytest.raises(KafkaException):
        consumer_with(client).commit([StubMessage()])
