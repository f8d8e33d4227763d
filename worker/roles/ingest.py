"""The ingest role: CDC messages -> commands -> events + outbox, one transaction per consumed batch.

The order is the correctness (numbered below): consume -> decode -> decide -> append+outbox (commit DB) ->
dead letters confirmed -> commit offsets. A crash anywhere before step 6 redelivers the batch, and handling is
idempotent (the aggregate drops changes it has already applied), so every change is applied exactly once.

Whatever a message contains, it is applied or dead-lettered with a typed reason, and the rest of its batch goes
on. A dead-lettered change marks every client it names (when they are known) for resync, in the same
transaction, so later changes wait for Salesforce's record instead of applying on top of a hole.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import pydantic

from worker.adapters.kafka.dlq import DeadLetter, Stage
from worker.adapters.kafka.types import KafkaMessage, where
from worker.application.bus import CommandBus
from worker.application.commands import Command, MarkClientForResync
from worker.application.errors import ConcurrencyConflict, InvalidCommand, TransientFailure
from worker.application.handlers import HandlerContext
from worker.application.ports import Decoded, PendingCommit
from worker.application.unit_of_work import ClientBatch
from worker.application.validation import InvalidChangeValues, duplicate_changes
from worker.domain import StatusRule
from worker.domain.errors import DomainError
from worker.roles.failures import ROW_DATA_ERRORS, Kind, classify

log = logging.getLogger("worker.ingest")


# message -> commands; raises a ChangeEventParseError (stage parse), an InvalidChangeValues or pydantic
# ValidationError (stage validate) or another poison error (stage translate); an error naming the clients of
# the message carries them as `client_ids`.
Decoder = Callable[[KafkaMessage], Decoded]
Coordinates = tuple[str | None, int | None, int | None]


@dataclass
class BatchOutcome:
    messages: int = 0
    events: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    events_replayed: int = 0
    snapshot_hits: int = 0
    load_seconds: float = 0.0


class _Item(NamedTuple):
    """One decoded message: its commands, or the dead letter of its decoding and the clients it names. (A tuple:
    one is made per message, and a frozen dataclass costs a microsecond more.)"""

    message: KafkaMessage
    key: Coordinates  # the message's (topic, partition, offset)
    commands: Sequence[Command]
    failure: DeadLetter | None = None
    client_ids: tuple[str, ...] = ()


# Raised while a staged batch's events are written: the batch is decided again, each commit awaited.
_DECIDE_AGAIN: tuple[type[BaseException], ...] = (ConcurrencyConflict, *ROW_DATA_ERRORS)

# What `IngestProcessor.predecode` made of each message: its item and why it was skipped, if it was.
Predecoded = list[tuple[_Item, str | None]]


class _Decided(NamedTuple):
    """What deciding a batch gave, counted once its transaction committed."""

    events: int
    commands: Counter[str]
    dead_letters: list[DeadLetter]
    events_replayed: int
    snapshot_hits: int
    load_seconds: float


class IngestProcessor:
    """Steps 2-4 for one batch, with no Kafka client in sight (messages follow the KafkaMessage protocol).

    The dead-lettering decision is made once: the messages of a batch whose transaction committed are settled,
    and a retry of the same batch (its dead letters were not confirmed) returns their dead letters again without
    deciding anew on state that already contains the refusal. A retry before the commit decides on aggregates
    reloaded from the store (the batch's own are dropped with the failed transaction)."""

    def __init__(
        self,
        decode: Decoder,
        parse_errors: tuple[type[BaseException], ...],
        bus: CommandBus,
        new_batch: Callable[[], ClientBatch],
        rule: StatusRule,
        conflict_retries: int = 5,
    ) -> None:
        self._decode = decode
        self._parse_errors = parse_errors
        self._bus = bus
        self._new_batch = new_batch
        self._rule = rule
        self._conflict_retries = conflict_retries
        self._settled: dict[Coordinates, list[DeadLetter]] = {}

    def process(self, messages: Sequence[KafkaMessage]) -> BatchOutcome:
        """Steps 2-4 for ``messages``, each commit awaited."""
        outcome, items = self._prepare(messages, None)
        # 3-4. decide and commit; a value the store refuses splits the batch until the message is isolated.
        self._apply(items, outcome)
        return outcome

    def predecode(self, messages: Sequence[KafkaMessage]) -> Predecoded | None:
        """Step 2 ahead of time, for `start`: decoding is pure (parse + translate), so it runs while the previous
        batch's commit is confirmed. None when a message's decoding raised something that is not poison (a
        transient fault, a bug): `start` decodes again and raises it where it is handled."""
        try:
            return [self._decode_one(m, _coordinates(m)) for m in messages]
        except Exception:
            return None

    def start(self, messages: Sequence[KafkaMessage], predecoded: Predecoded | None = None) -> StagedBatch:
        """Steps 2-4 with the commit sent, not awaited (`ClientBatch.begin_commit`): `StagedBatch.complete()`
        confirms it. A conflict or a value the store refuses while the events are written is handled at once,
        as `process` does."""
        outcome, items = self._prepare(messages, predecoded)
        if not items:
            return StagedBatch(self, messages, outcome)
        batch = self._new_batch()
        try:
            decided = self._decide(batch, items)
            pending = batch.begin_commit()
        except _DECIDE_AGAIN as exc:
            log.info("%s..%s: %s while writing: deciding the batch again, each commit awaited",
                     where(messages[0]), where(messages[-1]), type(exc).__name__)
            batch.close()
            self._apply(items, outcome)
            return StagedBatch(self, messages, outcome)
        finally:
            batch.close()
        return StagedBatch(self, messages, outcome, items, decided, pending)

    def _prepare(self, messages: Sequence[KafkaMessage],
                 predecoded: Predecoded | None) -> tuple[BatchOutcome, list[_Item]]:
        outcome = BatchOutcome(messages=len(messages))
        if predecoded is not None and len(predecoded) != len(messages):
            predecoded = None
        # the coordinates the decoding ahead already took, else each message's
        keys = [item.key for item, _ in predecoded] if predecoded is not None else [_coordinates(m) for m in messages]
        if self._settled:
            present = set(keys)
            self._settled = {key: letters for key, letters in self._settled.items() if key in present}
        items = []
        for n, (message, key) in enumerate(zip(messages, keys, strict=True)):
            settled = self._settled.get(key)
            if settled is not None:  # committed by an earlier attempt of this batch
                outcome.dead_letters += settled
                continue
            # 2. decode: parse + translate; what cannot be decoded is poison.
            item, skipped = predecoded[n] if predecoded is not None else self._decode_one(message, key)
            if skipped:
                outcome.skipped[skipped] += 1
            items.append(item)
        return outcome, items

    def _decode_one(self, message: KafkaMessage, key: Coordinates) -> tuple[_Item, str | None]:
        try:
            result = self._decode(message)
        except BaseException as exc:
            if classify(exc) is not Kind.POISON:
                raise  # transient (e.g. a schema fetch): retried; anything else is a bug: stop
            stage = self._decode_stage(exc)
            log.warning("%s: %s failed: %s", where(message), stage, exc)
            item = _Item(message, key, [], DeadLetter(message, stage, exc), tuple(getattr(exc, "client_ids", ())))
            return item, None
        return _Item(message, key, result.commands), result.skipped

    def _decode_stage(self, exc: BaseException) -> Stage:
        if isinstance(exc, self._parse_errors):
            return Stage.PARSE
        if isinstance(exc, (InvalidChangeValues, pydantic.ValidationError)):
            return Stage.VALIDATE
        return Stage.TRANSLATE

    def _apply(self, items: list[_Item], outcome: BatchOutcome) -> None:
        """Bisect on a value the store refuses (the value rules should have refused it first): each half is its
        own transaction, in order, so the rest of the batch is applied and the culprit isolated."""
        if not items:
            return
        try:
            self._commit_retrying(items, outcome)
        except ROW_DATA_ERRORS as exc:
            if len(items) == 1:
                self._refused_by_store(items[0], exc, outcome)
                return
            log.warning("%s..%s: the store refused a value (%s): splitting the batch",
                        where(items[0].message), where(items[-1].message), type(exc).__name__)
            middle = len(items) // 2
            self._apply(items[:middle], outcome)
            self._apply(items[middle:], outcome)

    def _commit_retrying(self, items: list[_Item], outcome: BatchOutcome) -> None:
        # A conflicting writer makes us reload and decide again (bounded).
        for attempt in range(self._conflict_retries + 1):
            try:
                self._decide_and_commit(items, outcome)
                return
            except ConcurrencyConflict as exc:
                log.info("concurrency conflict (attempt %d), reloading: %s", attempt + 1, exc)
        raise TransientFailure(f"still conflicting after {self._conflict_retries} retries")

    def _decide_and_commit(self, items: list[_Item], outcome: BatchOutcome) -> None:
        """Decide on aggregates loaded for this attempt; touch ``outcome`` only once the transaction committed."""
        batch = self._new_batch()
        try:
            decided = self._decide(batch, items)
            # 4. append events + outbox rows + snapshots + resync queue in ONE transaction.
            batch.commit()
        finally:
            batch.close()
        self._committed(outcome, decided, items)

    def _decide(self, batch: ClientBatch, items: list[_Item]) -> _Decided:
        ctx = HandlerContext(batch, self._rule)
        flat = [cmd for item in items for cmd in item.commands]
        started = time.perf_counter()
        # the cached aggregates' versions are checked at the commit: PostgreSQL answers while the batch decides
        batch.preload({cid for cmd in flat for cid in _client_ids(cmd)} | {c for i in items for c in i.client_ids},
                      check_later=True)
        load_seconds = time.perf_counter() - started
        duplicates = duplicate_changes(flat)
        letters: list[DeadLetter] = []
        events, counts, index = 0, Counter[str](), 0
        for item in items:
            if item.failure is not None:
                reason = f"dead-lettered at {item.failure.stage}: {type(item.failure.error).__name__}"
                events += self._hold_back(item.client_ids, reason, ctx)
                letters.append(replace(item.failure, resync=_resync_note(item.client_ids, item.failure.stage)))
                continue
            failed: tuple[Stage, BaseException] | None = None
            held: list[str] = []
            for cmd in item.commands:
                index += 1
                if index - 1 in duplicates:
                    continue
                try:
                    events += self._bus.handle(cmd, ctx)
                    counts[type(cmd).__name__] += 1
                except (InvalidCommand, pydantic.ValidationError, DomainError) as exc:
                    stage = Stage.HANDLE if isinstance(exc, DomainError) else Stage.VALIDATE
                    log.warning("%s: %s %s refused: %s", where(item.message), type(cmd).__name__, stage, exc)
                    failed = failed or (stage, exc)
                    ids = _client_ids(cmd)
                    held += ids
                    events += self._hold_back(ids, f"dead-lettered {type(cmd).__name__}: {type(exc).__name__}", ctx)
            if failed is not None:
                letters.append(DeadLetter(item.message, *failed, resync=_resync_note(held, failed[0])))
        return _Decided(events, counts, letters, batch.events_replayed, batch.snapshot_hits, load_seconds)

    def _committed(self, outcome: BatchOutcome, decided: _Decided, items: list[_Item]) -> None:
        """The batch's transaction committed: its figures count, its dead letters are settled."""
        outcome.events += decided.events
        outcome.commands += decided.commands
        outcome.dead_letters += decided.dead_letters
        outcome.events_replayed += decided.events_replayed
        outcome.snapshot_hits += decided.snapshot_hits
        outcome.load_seconds += decided.load_seconds
        self._settle(items, decided.dead_letters)

    def _refused_by_store(self, item: _Item, exc: BaseException, outcome: BatchOutcome) -> None:
        """The one message whose events the store refused: dead-lettered, its clients held back (alone)."""
        log.error("%s: the store refused a value of this message: %s", where(item.message), exc)
        ids = tuple(dict.fromkeys([*item.client_ids, *(c for cmd in item.commands for c in _client_ids(cmd))]))
        batch = self._new_batch()
        ctx = HandlerContext(batch, self._rule)
        events = self._hold_back(ids, f"dead-lettered: the store refused a value ({type(exc).__name__})", ctx)
        batch.commit()
        letter = DeadLetter(item.message, Stage.HANDLE, exc, resync=_resync_note(ids, Stage.HANDLE))
        outcome.events += events
        outcome.dead_letters.append(letter)
        self._settle([item], [letter])

    def _hold_back(self, client_ids: Iterable[str], reason: str, ctx: HandlerContext) -> int:
        """A dead-lettered change leaves a hole: mark its clients dirty so later changes wait for a resync."""
        return sum(self._bus.handle(MarkClientForResync(client_id=cid, reason=reason), ctx) for cid in client_ids)

    def _settle(self, items: Iterable[_Item], letters: Iterable[DeadLetter]) -> None:
        by_message: dict[Coordinates, list[DeadLetter]] = {}
        for letter in letters:
            by_message.setdefault(_coordinates(letter.message), []).append(letter)
        for item in items:
            self._settled[item.key] = by_message.get(item.key, [])


class StagedBatch:
    """A batch decided and sent to the store (`IngestProcessor.start`), its commit not yet confirmed, or one
    already settled. `complete()` confirms it and gives its outcome; when the commit failed (a transient fault,
    a conflict its end revealed, a value refused there), the batch is processed again, each commit awaited, as a
    retry of `process` would (a refused value is then isolated and dead-lettered; a transient fault retried as
    any batch is). It may be called again: the outcome is kept."""

    def __init__(self, processor: IngestProcessor, messages: Sequence[KafkaMessage], outcome: BatchOutcome,
                 items: list[_Item] | None = None, decided: _Decided | None = None,
                 pending: PendingCommit | None = None) -> None:
        self._processor, self._messages, self._outcome = processor, messages, outcome
        self._items, self._decided, self._pending = items or [], decided, pending
        self._result: BatchOutcome | None = outcome if pending is None else None

    def complete(self) -> BatchOutcome:
        if self._result is not None:
            return self._result
        pending, self._pending = self._pending, None
        if pending is not None and self._decided is not None:
            try:
                pending.wait()
            except Exception as exc:
                if classify(exc) is Kind.BUG and not isinstance(exc, ROW_DATA_ERRORS):
                    raise  # a value refused at the end is isolated by processing again, as `process` does
                log.warning("%s..%s: the batch's commit failed (%s: %s): processing it again",
                            where(self._messages[0]), where(self._messages[-1]), type(exc).__name__, exc)
            else:
                self._processor._committed(self._outcome, self._decided, self._items)
                self._result = self._outcome
                return self._result
        self._result = self._processor.process(self._messages)
        return self._result

    def close(self) -> None:
        """Give up on a commit not confirmed (its connection is given back once the server has answered)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()


def _coordinates(message: KafkaMessage) -> Coordinates:
    return (message.topic(), message.partition(), message.offset())


def _resync_note(client_ids: Sequence[str], stage: Stage) -> str:
    if client_ids:
        return "marked for resync: " + ", ".join(client_ids)
    if stage is Stage.PARSE:
        return "no client marked for resync: the message did not parse, its record ids are unknown"
    return "no client marked for resync: the message names no valid record id"


def _client_ids(cmd: Command) -> list[str]:
    single = getattr(cmd, "client_id", None)
    if single:
        return [single]
    return list(getattr(cmd, "client_ids", ()))
