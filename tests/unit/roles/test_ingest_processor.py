"""The ingest processor on hostile CDC messages: every message is applied or dead-lettered with a typed reason,
the rest of its batch goes on, and a dead letter never leaves a silent hole (its clients are marked dirty)."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.cdc_factory import CdcFactory
from tests.unit.roles.ingest_kit import MemoryStore, Message, messages, processor
from worker.adapters.kafka.dlq import DeadLetter, DeadLetterNotDelivered, Stage
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.application.bus import CommandBus
from worker.application.errors import InvalidCommand
from worker.application.validation import InvalidChangeValues, UntranslatableChange
from worker.config import KafkaSettings, RetrySettings
from worker.domain.errors import ForbiddenStatusTransition
from worker.roles.loop import ConsumerLoop
from worker.roles.runtime import IdleClock, RoleControl, Stopper

A, B, C = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"


def test_a_create_whose_employee_count_is_not_a_number_is_dead_lettered_at_validate_and_the_batch_goes_on() -> None:
    f, store = CdcFactory(), MemoryStore()
    outcome = processor(store).process(messages(f.create(A, NumberOfEmployees="many"), f.create(B)))
    [letter] = outcome.dead_letters
    assert letter.stage is Stage.VALIDATE and isinstance(letter.error, InvalidChangeValues)
    assert "employees" in str(letter.error) and letter.message.offset() == 0
    assert letter.resync == f"marked for resync: {A}"
    assert store.kinds(A) == ["ClientMarkedForResync"] and A in store.resync_requested
    assert store.kinds(B) == ["ClientRegistered"]


def test_changes_after_a_dead_lettered_one_wait_for_the_resync_instead_of_applying_on_a_hole() -> None:
    f, store = CdcFactory(), MemoryStore()
    processor(store).process(messages(f.create(A)))
    key, value = f.update(A, Phone="lost")
    infinite = re.sub(rb'"LastModifiedDate": \d+', b'"LastModifiedDate": Infinity', value)  # int(inf) fails
    outcome = processor(store).process(messages((key, infinite), f.update(A, Phone="later"), start=1))
    [letter] = outcome.dead_letters
    assert letter.stage is Stage.TRANSLATE and type(letter.error) is UntranslatableChange
    assert isinstance(letter.error.__cause__, OverflowError)
    assert store.kinds(A) == ["ClientRegistered", "ClientMarkedForResync"]


def test_garbage_bytes_are_dead_lettered_saying_no_client_could_be_marked() -> None:
    store = MemoryStore()
    outcome = processor(store).process(messages((b"k", b"\x07\x00garbage")))
    [letter] = outcome.dead_letters
    assert letter.stage is Stage.PARSE and isinstance(letter.error, ChangeEventParseError)
    assert letter.resync == "no client marked for resync: the message did not parse, its record ids are unknown"
    assert store.events == [] and store.resync_requested == {}


@pytest.mark.parametrize(("fields", "nulled", "problem"), [
    ({"AnnualRevenue": float("nan")}, (), "annual_revenue"),
    ({"AnnualRevenue": float("-inf")}, (), "annual_revenue"),
    ({"Phone": "+1\u0000555"}, (), "NUL"),
    ({"Custom__c": {"deep": "\u0000"}}, (), "NUL"),
    ({"Custom__c": 2**70}, (), "64 bits"),
    ({"NumberOfEmployees": "12"}, (), "employees must be an integer"),
    ({"Phone": 5551234}, (), "phone must be a text"),
    ({"Description": "x" * 200_000}, (), "more than"),
    ({"Name": None}, ("Name",), "name cannot be set to empty"),
])
def test_an_update_carrying_a_value_postgres_refuses_is_refused_at_validate(
    fields: dict[str, object], nulled: tuple[str, ...], problem: str
) -> None:
    f, store = CdcFactory(), MemoryStore()
    processor(store).process(messages(f.create(A), f.create(B)))
    outcome = processor(store).process(messages(f.update(A, nulled=nulled, **fields), f.update(B, Phone="ok"),
                                                start=2))
    [letter] = outcome.dead_letters
    assert letter.stage is Stage.VALIDATE, letter.error
    assert isinstance(letter.error, (InvalidCommand, InvalidChangeValues)) and problem in str(letter.error)
    assert store.kinds(A)[-1] == "ClientMarkedForResync" and store.kinds(B)[-1] == "ClientDetailsChanged"


def test_a_commit_timestamp_beyond_64_bits_is_refused_with_the_clients_of_the_header_marked() -> None:
    f, store = CdcFactory(), MemoryStore()
    key, value = f.create(A)
    outcome = processor(store).process(messages((key, value.replace(b'"commitTimestamp": ', b'"commitTimestamp": 9'
                                                                                            b'99999999999'))))
    [letter] = outcome.dead_letters
    assert letter.stage is Stage.VALIDATE and letter.error.client_ids == (A,)  # type: ignore[attr-defined]
    assert store.kinds(A) == ["ClientMarkedForResync"]


def test_a_refused_change_is_dead_lettered_once_when_its_committed_batch_is_retried() -> None:
    """The loop retries a batch whose dead letters were not confirmed after its transaction committed: the
    client is dirty by then, so deciding again would apply nothing and dead-letter nothing."""
    f, store = CdcFactory(), MemoryStore()
    processor(store).process(messages(f.create(A, Active__c="Yes")))
    batch = messages(f.update(A, Type="Prospect"), f.create(B), start=1)  # a customer never becomes a prospect
    ingest = processor(store)
    first = ingest.process(batch)
    again = ingest.process(batch)
    assert [type(letter.error) for letter in first.dead_letters] == [ForbiddenStatusTransition]
    assert again.dead_letters == first.dead_letters and again.events == 0
    assert store.kinds(A) == ["ClientRegistered", "ClientMarkedForResync"] and store.kinds(B) == ["ClientRegistered"]


def test_a_batch_retried_after_a_failed_commit_decides_again_on_reloaded_state_and_refuses_once() -> None:
    f, store = CdcFactory(), MemoryStore()
    processor(store).process(messages(f.create(A, Active__c="Yes")))
    batch = messages(f.update(A, Type="Prospect"), f.update(A, Phone="held back"), start=1)
    ingest = processor(store)
    store.fail_next = [psycopg.OperationalError("connection lost")]
    with pytest.raises(psycopg.OperationalError):
        ingest.process(batch)
    outcome = ingest.process(batch)
    assert [letter.stage for letter in outcome.dead_letters] == [Stage.HANDLE]
    assert store.kinds(A) == ["ClientRegistered", "ClientMarkedForResync"]


def test_a_value_the_store_refuses_is_isolated_by_splitting_the_batch_and_the_rest_is_applied() -> None:
    """The last line of defence: without the value rules, the store's DataError splits the batch."""
    f, store = CdcFactory(), MemoryStore()
    unchecked = CommandBus(middleware=[])
    batch = messages(f.create(A), f.create(B, Phone="+1\u0000555"), f.create(C), f.update(A, Phone="1"))
    outcome = processor(store, unchecked).process(batch)
    [letter] = outcome.dead_letters
    assert letter.message.offset() == 1 and letter.stage is Stage.HANDLE
    assert isinstance(letter.error, psycopg.DataError) and letter.resync == f"marked for resync: {B}"
    assert store.kinds(A) == ["ClientRegistered", "ClientDetailsChanged"] and store.kinds(C) == ["ClientRegistered"]
    assert store.kinds(B) == ["ClientMarkedForResync"]


class OneBatchConsumer:
    """Hands out one batch, then nothing; records the commits."""

    def __init__(self, batch: list[Message]) -> None:
        self._batches, self.committed, self.joined, self.uncommitted = [batch], [], True, {}

    def consume(self, _n: int, _timeout: float) -> list[Message]:
        return self._batches.pop(0) if self._batches else []

    def commit(self, batch: list[Message]) -> None:
        self.committed.append([m.offset() for m in batch])

    def pause_all(self) -> None: ...
    def resume_all(self) -> None: ...
    def seek_to(self, _messages: list[Message]) -> None: ...
    def close(self) -> None: ...


class FlakyDeadLetters:
    """A DLQ whose first flush is not acknowledged (transient): what it confirmed is in `delivered`."""

    def __init__(self) -> None:
        self.pending: list[DeadLetter] = []
        self.delivered: list[DeadLetter] = []
        self.failures = 1

    def publish(self, letter: DeadLetter) -> None:
        self.pending.append(letter)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if self.failures:
            self.failures -= 1
            raise DeadLetterNotDelivered("1 undelivered")
        self.delivered += pending


def test_the_loop_retrying_a_batch_whose_dead_letter_was_not_delivered_publishes_exactly_one() -> None:
    f, store = CdcFactory(), MemoryStore()
    processor(store).process(messages(f.create(A, Active__c="Yes")))
    batch = messages(f.update(A, Type="Prospect"), f.update(A, Phone="held back"), start=1)
    consumer, dlq = OneBatchConsumer(batch), FlakyDeadLetters()
    settings = KafkaSettings()
    retry = RetrySettings(initial_backoff_s=0.01, max_backoff_s=0.01)
    control = RoleControl(Stopper(), IdleClock(0), retry)
    loop = ConsumerLoop("ingest", consumer, processor(store).process, dlq, settings, control)  # type: ignore[arg-type]
    assert loop.run() == 0
    assert [(letter.message.offset(), letter.stage) for letter in dlq.delivered] == [(1, Stage.HANDLE)]
    assert consumer.committed == [[1, 2]]
    assert store.kinds(A) == ["ClientRegistered", "ClientMarkedForResync"]
