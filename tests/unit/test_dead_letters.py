"""Dead-letter publishing against a fake producer that fails on cue: an unusable DLQ topic is one clear error, a
slow acknowledgement is waited for (no second copy), and a dead letter always fits the topic."""

from __future__ import annotations

import hashlib

import pytest
from confluent_kafka import KafkaError

from tests.fakes.kafka import FakeProducer, OffsetMessage
from worker.adapters.kafka import dlq
from worker.adapters.kafka.dlq import (
    DeadLetter,
    DeadLetterNotDelivered,
    DeadLetterPublisher,
    DeadLetterTopicUnusable,
    Stage,
)
from worker.roles.failures import Kind, classify


def letter(value: bytes = b"\x00poison", error: BaseException | None = None) -> DeadLetter:
    message = OffsetMessage(partition_=2, offset_=41, topic_="cdc", value_=value, key_=b"001A",
                            headers_=[("traceparent", b"00-abc-def-01")])
    return DeadLetter(message, Stage.PARSE, error or ValueError("not a change event"))


def publisher(producer: FakeProducer) -> DeadLetterPublisher:
    return DeadLetterPublisher(producer, "client-ingest")  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC])
def test_a_missing_dlq_topic_is_one_error_naming_the_topic_and_the_fix(code: int) -> None:
    dead = publisher(FakeProducer(outcome=lambda _r: code))
    dead.publish(letter())
    with pytest.raises(DeadLetterTopicUnusable) as raised:
        dead.flush()
    assert "'cdc.dlq'" in str(raised.value) and "worker topics create" in str(raised.value)
    assert classify(raised.value) is Kind.BUG  # not retried as transient with the partitions paused


def test_a_dlq_topic_refused_at_produce_time_is_the_same_error() -> None:
    dead = publisher(FakeProducer(refuse=lambda _r: KafkaError._UNKNOWN_TOPIC))
    with pytest.raises(DeadLetterTopicUnusable, match="does not exist"):
        dead.publish(letter())


def test_a_dlq_topic_we_may_not_write_names_the_missing_permission() -> None:
    dead = publisher(FakeProducer(outcome=lambda _r: KafkaError.TOPIC_AUTHORIZATION_FAILED))
    dead.publish(letter())
    with pytest.raises(DeadLetterTopicUnusable, match="WRITE"):
        dead.flush()


def test_a_slow_acknowledgement_is_waited_for_not_sent_twice() -> None:
    producer = FakeProducer(ack_after_s=45.0)  # acknowledged after 45 s, within message.timeout.ms (60 s)
    dead = publisher(producer)
    dead.publish(letter())
    dead.flush()
    assert len(producer.produced) == 1 and len(producer.delivered) == 1
    assert producer.flushes[0] >= 60


def test_a_dead_letter_the_producer_gave_up_on_is_transient() -> None:
    dead = publisher(FakeProducer(outcome=lambda _r: KafkaError._MSG_TIMED_OUT))
    dead.publish(letter())
    with pytest.raises(DeadLetterNotDelivered) as raised:
        dead.flush()
    assert classify(raised.value) is Kind.TRANSIENT


def test_a_long_stack_trace_and_message_are_cut_so_the_original_value_still_fits() -> None:
    producer = FakeProducer()
    dead = publisher(producer)
    value = b"x" * 990_000
    dead.publish(letter(value, ValueError("y" * 50_000)))
    dead.flush()
    [record] = producer.delivered
    assert record.value == value and record.size <= 1_000_000
    assert record.header(dlq.H_ORIGINAL_OMITTED) is None
    assert "(truncated)" in (record.header(dlq.H_MESSAGE) or "")


def test_a_poison_message_too_large_for_the_dlq_is_kept_as_a_reference() -> None:
    producer = FakeProducer()
    dead = publisher(producer)
    value = b"z" * 999_900  # near 1 MB: the reason headers cannot fit beside it
    dead.publish(letter(value))
    dead.flush()
    [record] = producer.delivered
    assert record.value is None and record.key == b"001A" and record.size <= 1_000_000
    assert record.header(dlq.H_ORIGINAL_OMITTED) == "value"
    assert record.header(dlq.H_ORIGINAL_SIZE) == str(len(value))
    assert record.header(dlq.H_ORIGINAL_SHA256) == hashlib.sha256(value).hexdigest()
    assert (record.header(dlq.H_TOPIC), record.header(dlq.H_PARTITION), record.header(dlq.H_OFFSET)) == (
        "cdc", "2", "41")
    assert record.header(dlq.H_STAGE) == "parse" and record.header("traceparent") == "00-abc-def-01"


def test_a_record_the_broker_refuses_as_too_large_is_sent_again_as_a_reference() -> None:
    # the topic's max.message.bytes is below the producer's limit: the refusal comes in the delivery report
    producer = FakeProducer(outcome=lambda r: KafkaError.MSG_SIZE_TOO_LARGE if (r.value or b"") else None)
    dead = publisher(producer)
    dead.publish(letter(b"v" * 500_000))
    dead.flush()
    assert len(producer.produced) == 2
    [record] = producer.delivered
    assert record.value is None and record.header(dlq.H_ORIGINAL_SIZE) == "500000"


def test_a_dead_letter_keeps_its_stack_trace_as_text_and_lets_the_failed_frames_go() -> None:
    from tests.fakes.kafka import OffsetMessage
    from worker.adapters.kafka.dlq import DeadLetter, Stage

    try:
        try:
            int("many")
        except ValueError as inner:
            raise RuntimeError("cannot translate") from inner
    except RuntimeError as exc:
        letter = DeadLetter(OffsetMessage(), Stage.TRANSLATE, exc)
    assert "int(\"many\")" in letter.stacktrace and "cannot translate" in letter.stacktrace
    assert letter.error.__traceback__ is None and letter.error.__cause__ is not None
    assert letter.error.__cause__.__traceback__ is None


def test_an_error_quoting_a_text_with_no_utf8_form_is_written_as_its_escape() -> None:
    """The store's last line of defence quotes the value it could not encode (an unpaired surrogate) in its
    message: the dead letter must still be written, the character as its escape."""
    producer = FakeProducer()
    dead = publisher(producer)
    dead.publish(letter(error=ValueError("cannot encode 'x\ud800y'")))
    dead.flush()
    [record] = producer.delivered
    assert record.header(dlq.H_MESSAGE) == "cannot encode 'x\\ud800y'"
