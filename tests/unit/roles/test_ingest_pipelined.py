"""Ingest pipelined: batch n+1 is decoded while batch n's commit is confirmed. Its offsets move only once its
commit is confirmed and its dead letters delivered; a commit whose end fails is processed again; nothing is
cached from a commit that did not happen."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.cdc_factory import CdcFactory
from tests.fakes.event_store import MemoryStore
from tests.unit.roles.ingest_kit import Message, messages, processor
from worker.adapters.kafka.dlq import Stage
from worker.adapters.salesforce.decoder import CdcDecoder
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.adapters.salesforce.mapping import FieldMapping
from worker.adapters.salesforce.schemas import SchemaResolver
from worker.application.bus import CommandBus, default_middleware
from worker.application.errors import ConcurrencyConflict, TransientFailure
from worker.application.unit_of_work import AggregateCache, ClientBatch
from worker.config import KafkaSettings, RetrySettings
from worker.domain import StatusRule
from worker.roles.ingest import IngestProcessor
from worker.roles.loop import ConsumerLoop
from worker.roles.runtime import IdleClock, RoleControl, Stopper

A, B, C = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"


class Journal:
    """One list of what happened, in order, across the fakes."""

    def __init__(self) -> None:
        self.entries: list[str] = []


class BatchesConsumer:
    """Hands out the given batches one per consume() (nothing once they are gone); records commits and waits."""

    def __init__(self, journal: Journal, *batches: list[Message]) -> None:
        self._batches, self.journal = list(batches), journal
        self.committed: list[list[int]] = []
        self.timeouts: list[float] = []
        self.joined, self.uncommitted = True, {}

    def consume(self, _n: int, timeout: float) -> list[Message]:
        self.timeouts.append(timeout)
        batch = self._batches.pop(0) if self._batches else []
        if batch:
            self.journal.entries.append(f"consume {batch[0].offset()}")
        return batch

    def commit(self, batch: list[Message]) -> None:
        self.committed.append([m.offset() for m in batch])
        self.journal.entries.append(f"offsets {batch[0].offset()}")

    def pause_all(self) -> None: ...
    def resume_all(self) -> None: ...
    def seek_to(self, _messages: list[Message]) -> None: ...
    def close(self) -> None: ...


class Letters:
    def __init__(self, journal: Journal) -> None:
        self.journal, self.delivered = journal, []

    def publish(self, letter: Any) -> None:
        self.delivered.append(letter)
        self.journal.entries.append(f"dead letter {letter.message.offset()}")

    def flush(self) -> None: ...


class JournaledStore(MemoryStore):
    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def _apply(self, changes: Any) -> None:
        super()._apply(changes)
        self.journal.entries.append(f"committed {len(changes.events)} events")


class JournaledProcessor(IngestProcessor):
    def __init__(self, journal: Journal, store: MemoryStore, cache: AggregateCache | None = None) -> None:
        decoder = CdcDecoder(SchemaResolver(), FieldMapping.from_overrides(), cdc_format="auto", own_client_id=None)
        super().__init__(decoder, (ChangeEventParseError,), CommandBus(middleware=default_middleware()),
                         lambda: ClientBatch(store, snapshot_interval=100, worker_version="test", cache=cache),
                         StatusRule())
        self.journal = journal

    def predecode(self, messages: Any) -> Any:
        self.journal.entries.append(f"decode {messages[0].offset()}")
        return super().predecode(messages)


def _loop(consumer: BatchesConsumer, proc: IngestProcessor, dlq: Letters) -> ConsumerLoop:
    retry = RetrySettings(initial_backoff_s=0.01, max_backoff_s=0.01)
    return ConsumerLoop("ingest", consumer, proc.process, dlq, KafkaSettings(),  # type: ignore[arg-type]
                        RoleControl(Stopper(), IdleClock(0), retry), pipelined=proc)


def test_the_next_batch_is_decoded_before_the_staged_one_is_confirmed_and_offsets_follow_the_commit() -> None:
    f, journal = CdcFactory(), Journal()
    store = JournaledStore(journal)
    first = messages(f.create(A), f.create(B), (b"k", b"garbage"), start=0)
    second = messages(f.update(A, Phone="2"), f.create(C), start=3)
    consumer, dlq = BatchesConsumer(journal, first, second), Letters(journal)
    assert _loop(consumer, JournaledProcessor(journal, store), dlq).run() == 0
    assert journal.entries == [
        "consume 0",  # decided, its commit sent
        "consume 3", "decode 3",  # the next batch decoded while the first one's commit completes
        "committed 2 events", "dead letter 2", "offsets 0",  # then the first one is confirmed, in that order
        "committed 2 events", "offsets 3",  # the second: confirmed once nothing more arrived
    ]
    assert consumer.committed == [[0, 1, 2], [3, 4]]
    assert store.kinds(A) == ["ClientRegistered", "ClientDetailsChanged"] and store.kinds(C) == ["ClientRegistered"]
    # with a batch staged, consume() only takes what has arrived: a quiet topic does not hold the batch back
    assert consumer.timeouts[1:3] == [0, 0]


def test_a_commit_whose_end_fails_is_processed_again_and_nothing_is_cached_from_it() -> None:
    f, journal = CdcFactory(), Journal()
    store, cache = JournaledStore(journal), AggregateCache(100)
    store.fail_at_wait.append(psycopg.OperationalError("server closed the connection unexpectedly"))
    proc = JournaledProcessor(journal, store, cache)
    staged = proc.start(messages(f.create(A), f.update(A, Phone="1"), start=0))
    assert store.events == [] and len(cache) == 0  # sent, not confirmed: nothing cached yet
    outcome = staged.complete()  # the end failed: processed again, each commit awaited
    assert store.kinds(A) == ["ClientRegistered", "ClientDetailsChanged"] and outcome.events == 2
    assert staged.complete() is outcome  # a retry of the loop's attempt gets the same outcome
    assert journal.entries == ["committed 2 events"]


def test_a_staged_batch_gives_its_aggregates_to_the_cache_only_once_its_commit_is_confirmed() -> None:
    f, journal = CdcFactory(), Journal()
    store, cache = JournaledStore(journal), AggregateCache(100)
    proc = JournaledProcessor(journal, store, cache)
    staged = proc.start(messages(f.create(A), start=0))
    assert len(cache) == 0
    staged.complete()
    assert len(cache) == 1
    # a conflict found while the next batch's events are written: decided again at once, on reloaded streams
    store.fail_next.append(ConcurrencyConflict("moved"))
    outcome = proc.start(messages(f.update(A, Phone="9"), start=1)).complete()
    assert outcome.events == 1 and store.kinds(A) == ["ClientRegistered", "ClientDetailsChanged"]


def test_a_graceful_stop_confirms_the_staged_batch_and_commits_its_offsets() -> None:
    f, journal = CdcFactory(), Journal()
    store = JournaledStore(journal)
    consumer, dlq = BatchesConsumer(journal, messages(f.create(A))), Letters(journal)
    proc = JournaledProcessor(journal, store)
    loop = _loop(consumer, proc, dlq)
    stopper = loop._stopper
    original = consumer.consume

    def consume_then_stop(n: int, timeout: float) -> list[Message]:
        batch = original(n, timeout)
        stopper.stop()  # a signal while the batch is being processed
        return batch

    consumer.consume = consume_then_stop  # type: ignore[method-assign]
    assert loop.run() == 0
    assert store.kinds(A) == ["ClientRegistered"] and consumer.committed == [[0]]


def test_the_outcome_of_a_staged_batch_equals_the_one_processing_it_waits_for() -> None:
    f = CdcFactory()
    batches = [messages(f.create(A), f.create(B), start=0), messages(f.update(A, Phone="1"), f.delete(B), start=2),
               messages(f.update(B, Phone="x"), f.update(A, Name=""), start=4)]
    waited, staged_store = MemoryStore(), MemoryStore()
    by_process = [processor(waited).process(b) for b in batches]
    proc = processor(staged_store)
    by_start = []
    for b in batches:
        by_start.append(proc.start(b, proc.predecode(b)).complete())
    def summary(o: Any) -> Any:
        return o.events, dict(o.commands), [(d.message.offset(), d.stage) for d in o.dead_letters]

    assert [summary(o) for o in by_process] == [summary(o) for o in by_start]
    assert [(e.stream_id, e.version, e.event_type) for e in waited.events] == \
        [(e.stream_id, e.version, e.event_type) for e in staged_store.events]
    assert any(d.stage is Stage.VALIDATE for o in by_start for d in o.dead_letters)


class FlakyDecoder:
    """The real decoder, raising ``error`` at its first call (a schema registry down, a bug)."""

    def __init__(self, error: Exception) -> None:
        self._real = CdcDecoder(SchemaResolver(), FieldMapping.from_overrides(), cdc_format="auto",
                                own_client_id=None)
        self._error: Exception | None = error

    def __call__(self, message: Any) -> Any:
        error, self._error = self._error, None
        if error is not None:
            raise error
        return self._real(message)


def _with_decoder(decoder: Any, store: MemoryStore) -> IngestProcessor:
    return IngestProcessor(decoder, (ChangeEventParseError,), CommandBus(middleware=default_middleware()),
                           lambda: ClientBatch(store, snapshot_interval=100, worker_version="test"), StatusRule())


def test_what_cannot_be_decoded_ahead_is_decoded_again_where_it_is_handled() -> None:
    f = CdcFactory()
    # transient while decoding ahead: nothing is lost, the batch is decoded again when it is started
    store = MemoryStore()
    proc = _with_decoder(FlakyDecoder(TransientFailure("schema registry: 503")), store)
    batch = messages(f.create(A), f.create(B))
    assert proc.predecode(batch) is None
    assert proc.start(batch, None).complete().events == 2 and store.kinds(B) == ["ClientRegistered"]
    # a bug while decoding ahead is not swallowed: it is raised when the batch is started
    proc = _with_decoder(FlakyDecoder(KeyError("a bug")), MemoryStore())
    assert proc.predecode(batch) is None
    proc = _with_decoder(FlakyDecoder(KeyError("a bug")), MemoryStore())
    with pytest.raises(KeyError):
        proc.start(batch, None)


def test_a_value_refused_at_the_commits_end_is_isolated_as_the_waiting_path_does() -> None:
    """A row PostgreSQL refuses among the statements sent after the events (a snapshot, the resync queue) is
    known only when the answer is read: the batch is processed again, so the refused message is isolated and
    dead-lettered instead of stopping the worker."""
    f = CdcFactory()
    store = MemoryStore()
    store.fail_at_wait.append(psycopg.errors.InvalidTextRepresentation("invalid input syntax for type json"))
    proc = _with_decoder(CdcDecoder(SchemaResolver(), FieldMapping.from_overrides(), cdc_format="auto",
                                    own_client_id=None), store)
    outcome = proc.start(messages(f.create(A), f.create(B))).complete()
    assert outcome.events == 2 and store.kinds(A) == ["ClientRegistered"] and outcome.dead_letters == []
