"""The relay against a fake outbox and a fake producer that fails on cue: only each stream's acknowledged prefix
leaves the outbox, and a row that cannot be published parks its stream while the others go on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError

from tests.fakes.kafka import FakeProducer, Produced
from worker.adapters.avro import UnknownEventSchema
from worker.adapters.kafka.producer import PublishFailed, TopicUnusable
from worker.adapters.postgres.outbox import OutboxRow
from worker.config import RetrySettings
from worker.roles.relay import OutboxRelay, RelayHooks, RelaySettings, acknowledged_prefix
from worker.roles.runtime import IdleClock, RoleControl, Stopper

A, B = "001A", "001B"


def row(position: int, stream: str, version: int, event_type: str = "ClientDetailsChanged") -> OutboxRow:
    return OutboxRow(position, f"e{position}", stream, version, event_type, 1, {}, {}, datetime.now(UTC))


class FakeOutbox:
    def __init__(self, rows: list[OutboxRow]) -> None:
        self.rows = {r.position: r for r in rows}

    def lead(self) -> bool:
        return True

    def backlog(self) -> tuple[int, Any]:
        return len(self.rows), None

    def unpublished(self, limit: int, held_back: Any = ()) -> list[OutboxRow]:
        return [r for _, r in sorted(self.rows.items()) if r.stream_id not in held_back][:limit]

    def delete_published(self, positions: Any) -> None:
        for p in positions:
            del self.rows[p]

    def touch(self) -> None: ...

    def close(self) -> None: ...

    def left(self) -> list[tuple[str, int]]:
        return [(r.stream_id, r.version) for _, r in sorted(self.rows.items())]


def relay_of(outbox: FakeOutbox, producer: FakeProducer, encode: Any = None, parked: list[int] | None = None
             ) -> OutboxRelay:
    control = RoleControl(Stopper(), IdleClock(0.05), RetrySettings(initial_backoff_s=0.001, max_backoff_s=0.01))
    hooks = RelayHooks(on_parked=(parked.append if parked is not None else None))
    return OutboxRelay(outbox, producer, encode or (lambda r: f"{r.stream_id}v{r.version}".encode()),  # type: ignore[arg-type]
                       RelaySettings("client.events"), control, hooks)


def test_rows_acknowledged_after_a_failed_row_of_the_same_stream_stay_in_the_outbox() -> None:
    outbox = FakeOutbox([row(1, A, 1), row(2, B, 1), row(3, A, 2), row(4, A, 3), row(5, B, 2)])
    failed = FakeProducer(outcome=lambda r: KafkaError._MSG_TIMED_OUT if r.value == b"001Av2" else None)
    with pytest.raises(PublishFailed):
        relay_of(outbox, failed).step()
    # A v3 was acknowledged but stays: deleting it would leave the projector a gap at v2 forever
    assert outbox.left() == [(A, 2), (A, 3)]
    producer = FakeProducer()
    assert relay_of(outbox, producer).step() == 2
    assert [r.value for r in producer.delivered] == [b"001Av2", b"001Av3"] and outbox.left() == []


def test_the_acknowledged_prefix_stops_each_stream_at_its_first_unacknowledged_row() -> None:
    rows = [row(1, A, 1), row(2, B, 1), row(3, A, 2), row(4, B, 2), row(5, A, 3)]
    assert [r.position for r in acknowledged_prefix(rows, {1, 2, 4, 5})] == [1, 2, 4]


def test_a_row_without_a_writer_schema_parks_its_stream_and_the_other_streams_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = FakeOutbox([row(1, A, 1), row(2, A, 2, "ClientMerged"), row(3, B, 1), row(4, A, 3)])

    def encode(r: OutboxRow) -> bytes:
        if r.event_type == "ClientMerged":
            raise UnknownEventSchema("no schema for ClientMerged v1")
        return f"{r.stream_id}v{r.version}".encode()

    producer, parked = FakeProducer(), []
    relay = relay_of(outbox, producer, encode, parked)
    assert relay.step() == 2
    assert [r.value for r in producer.delivered] == [b"001Av1", b"001Bv1"]  # A v3 waits behind A v2
    assert outbox.left() == [(A, 2), (A, 3)] and parked == [1]
    assert "outbox row 2 (ClientMerged v2 of 001A" in caplog.text and "no writer schema" in caplog.text
    # the parked stream is not read again, so it cannot fill every page and stall the relay
    outbox.rows[5] = row(5, B, 2)
    assert relay.step() == 1 and outbox.left() == [(A, 2), (A, 3)]


def test_a_row_whose_event_is_missing_parks_its_stream_with_an_error_and_the_other_streams_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = OutboxRow(2, "", A, 0, "", 0, {}, {}, datetime.now(UTC), missing_event=41)
    outbox = FakeOutbox([row(1, A, 1), missing, row(3, B, 1), row(4, A, 3)])
    producer, parked = FakeProducer(), []
    relay = relay_of(outbox, producer, parked=parked)
    assert relay.step() == 2
    assert [r.value for r in producer.delivered] == [b"001Av1", b"001Bv1"]  # nothing of A past the missing one
    assert outbox.left() == [(A, 0), (A, 3)] and set(relay.parked) == {A} and parked == [1]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "outbox row 2 (of 001A)" in errors[0] and "global position 41" in errors[0]


def test_a_row_over_the_size_limit_parks_its_stream_instead_of_stopping_the_relay() -> None:
    outbox = FakeOutbox([row(1, A, 1), row(2, B, 1), row(3, A, 2)])
    producer = FakeProducer(max_bytes=100)
    relay = relay_of(outbox, producer, lambda r: (b"x" * 500) if r.stream_id == A else b"small")
    assert relay.step() == 1
    assert outbox.left() == [(A, 1), (A, 2)] and set(relay.parked) == {A}


def test_a_row_the_broker_refuses_as_too_large_parks_its_stream() -> None:
    def outcome(r: Produced) -> int | None:
        return KafkaError.MSG_SIZE_TOO_LARGE if r.key == A.encode() else None

    outbox = FakeOutbox([row(1, A, 1), row(2, B, 1)])
    relay = relay_of(outbox, FakeProducer(outcome=outcome))
    assert relay.step() == 1
    assert outbox.left() == [(A, 1)] and set(relay.parked) == {A}


def test_a_missing_events_topic_stops_the_relay_with_one_line_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    outbox = FakeOutbox([row(1, A, 1)])
    relay = relay_of(outbox, FakeProducer(outcome=lambda _r: KafkaError.UNKNOWN_TOPIC_OR_PART))
    with pytest.raises(TopicUnusable, match=r"'client\.events' does not exist.*worker topics create"):
        relay.step()
    assert outbox.left() == [(A, 1)]
    assert relay.run() == 1  # not retried forever: an operator must create it
    assert any("worker topics create" in r.getMessage() for r in caplog.records)
