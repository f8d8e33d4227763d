"""The ingest role: CDC messages -> commands -> events + outbox, one transaction per consumed batch.

The order is the correctness (numbered below): consume -> decode -> decide -> append+outbox (commit DB) ->
dead letters confirmed -> commit offsets. A crash anywhere before step 6 redelivers the batch, and handling is
idempotent (the aggregate drops changes it has already applied), so every change is applied exactly once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pydantic

from worker.adapters.kafka.dlq import DeadLetter, Stage
from worker.adapters.kafka.types import KafkaMessage, where
from worker.application.bus import CommandBus
from worker.application.commands import Command, MarkClientForResync
from worker.application.errors import ConcurrencyConflict, InvalidCommand, TransientFailure
from worker.application.handlers import HandlerContext
from worker.application.ports import Decoded
from worker.application.unit_of_work import ClientBatch
from worker.application.validation import duplicate_changes
from worker.domain import StatusRule
from worker.domain.errors import DomainError
from worker.roles.failures import Kind, classify

log = logging.getLogger("worker.ingest")


# message -> commands; raises a ChangeEventParseError (stage parse) or anything else (stage translate).
Decoder = Callable[[KafkaMessage], Decoded]


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


class IngestProcessor:
    """Steps 2-4 for one batch, with no Kafka client in sight (messages follow the KafkaMessage protocol)."""

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

    def process(self, messages: Sequence[KafkaMessage]) -> BatchOutcome:
        outcome = BatchOutcome(messages=len(messages))
        # 2. decode: parse + translate; what cannot be decoded is poison.
        decoded: list[tuple[KafkaMessage, list[Command]]] = []
        for message in messages:
            try:
                result = self._decode(message)
            except BaseException as exc:
                if classify(exc) is not Kind.POISON:
                    raise  # transient (e.g. a schema fetch): retried; anything else is a bug: stop
                stage = self._decode_stage(exc)
                log.warning("%s: %s failed: %s", where(message), stage, exc)
                outcome.dead_letters.append(DeadLetter(message, stage, exc))
                continue
            if result.skipped:
                outcome.skipped[result.skipped] += 1
            decoded.append((message, result.commands))
        # 3. decide, in partition order; a conflicting writer makes us reload and decide again (bounded).
        for attempt in range(self._conflict_retries + 1):
            try:
                return self._decide_and_commit(decoded, outcome)
            except ConcurrencyConflict as exc:
                log.info("concurrency conflict (attempt %d), reloading: %s", attempt + 1, exc)
        raise TransientFailure(f"still conflicting after {self._conflict_retries} retries")

    def _decode_stage(self, exc: BaseException) -> Stage:
        if isinstance(exc, self._parse_errors):
            return Stage.PARSE
        if isinstance(exc, pydantic.ValidationError):
            return Stage.VALIDATE
        return Stage.TRANSLATE

    def _decide_and_commit(
        self, decoded: list[tuple[KafkaMessage, list[Command]]], outcome: BatchOutcome
    ) -> BatchOutcome:
        batch = self._new_batch()
        ctx = HandlerContext(batch, self._rule)
        flat = [cmd for _, cmds in decoded for cmd in cmds]
        started = time.perf_counter()
        batch.preload({cid for cmd in flat for cid in _client_ids(cmd)})
        outcome.load_seconds = time.perf_counter() - started
        duplicates = duplicate_changes(flat)
        letters = [letter for letter in outcome.dead_letters if letter.stage in (Stage.PARSE, Stage.TRANSLATE)]
        events, counts, index = 0, Counter[str](), 0
        for message, commands in decoded:
            failed = None
            for cmd in commands:
                index += 1
                if index - 1 in duplicates:
                    continue
                try:
                    events += self._bus.handle(cmd, ctx)
                    counts[type(cmd).__name__] += 1
                except (InvalidCommand, pydantic.ValidationError, DomainError) as exc:
                    stage = Stage.HANDLE if isinstance(exc, DomainError) else Stage.VALIDATE
                    log.warning("%s: %s %s refused: %s", where(message), type(cmd).__name__, stage, exc)
                    failed = failed or DeadLetter(message, stage, exc)
                    events += self._hold_back(cmd, ctx, exc)
            if failed is not None:
                letters.append(failed)
        # 4. append events + outbox rows + snapshots + resync queue in ONE transaction.
        batch.commit()
        outcome.events, outcome.commands, outcome.dead_letters = events, counts, letters
        outcome.events_replayed, outcome.snapshot_hits = batch.events_replayed, batch.snapshot_hits
        return outcome

    def _hold_back(self, cmd: Command, ctx: HandlerContext, exc: BaseException) -> int:
        """A dead-lettered change leaves a hole: mark its client dirty so later changes wait for a resync."""
        events = 0
        for client_id in _client_ids(cmd):
            reason = f"dead-lettered {type(cmd).__name__}: {type(exc).__name__}"
            events += self._bus.handle(MarkClientForResync(client_id=client_id, reason=reason), ctx)
        return events


def _client_ids(cmd: Command) -> list[str]:
    single = getattr(cmd, "client_id", None)
    if single:
        return [single]
    return list(getattr(cmd, "client_ids", ()))

