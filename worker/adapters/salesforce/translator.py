"""`ChangeEvent` -> commands, one per record id. Salesforce's envelope, field names and change types end here.

Whatever a change carries, translating it either gives commands or raises an `UntranslatableChange` (its
`InvalidChangeValues` subclass when the commands' contract refused a value): poison, never a bug, and naming the
clients of the parsed header so they are held back until a resync."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pydantic

from worker.adapters.salesforce.change_event import ChangeEvent, ChangeType, FieldState
from worker.adapters.salesforce.event_fields import UNCHANGED
from worker.adapters.salesforce.ids import OVERFLOW_ID, is_wildcard
from worker.adapters.salesforce.mapping import FieldMapping
from worker.application.commands import (
    NO_NUL,
    ChangeClientDetails,
    ChangeMetadata,
    ClientData,
    Command,
    DeleteClient,
    MarkClientForResync,
    RegisterClient,
    RestoreClient,
    ResyncAllClients,
    ResyncClients,
)
from worker.application.validation import InvalidChangeValues, UntranslatableChange

_UNCHANGED_STATE, _DIFF, _SET = FieldState.UNCHANGED, FieldState.DIFF, FieldState.SET
ACCOUNT_NAMES = frozenset({"account", "accountchangeevent", "/data/accountchangeevent"})
_CLIENT_ID = re.compile(r"^[a-zA-Z0-9]{18}$")
# What a change's content can make the translation raise (a value of an unexpected type or size); an error of
# another type is a bug of ours and stops the worker.
_CONTENT_ERRORS = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError, RecursionError,
                   UnicodeError)


class KafkaCoordinates(NamedTuple):  # a tuple: made for every message (a frozen dataclass costs 1 µs more)
    topic: str
    partition: int
    offset: int
    traceparent: str | None = None


@dataclass(frozen=True)
class TranslationResult:
    commands: list[Command] = field(default_factory=list)
    skipped: str | None = None  # why nothing is done: other entity, echo, snapshot


def is_account(entity_name: str) -> bool:
    return entity_name.strip().lower() in ACCOUNT_NAMES


def translate(
    event: ChangeEvent, kafka: KafkaCoordinates, *, mapping: FieldMapping, own_client_id: str | None = None
) -> TranslationResult:
    """Raises InvalidChangeValues (a command refused a value) or UntranslatableChange (anything else the
    content caused), both carrying the client ids of the header."""
    try:
        return _translate(event, kafka, mapping, own_client_id)
    except pydantic.ValidationError as exc:
        raise InvalidChangeValues(_validation_reason(exc), client_ids_of(event)) from exc
    except _CONTENT_ERRORS as exc:
        raise UntranslatableChange(f"{type(exc).__name__}: {exc}", client_ids_of(event)) from exc


def client_ids_of(event: ChangeEvent) -> tuple[str, ...]:
    """The clients a change names: its record ids that are client ids (not a wildcard or the overflow id)."""
    return tuple(i for i in event.record_ids if isinstance(i, str) and _CLIENT_ID.match(i) and i != OVERFLOW_ID)


def _validation_reason(exc: pydantic.ValidationError) -> str:
    """pydantic's message without the input values (a refused value may be megabytes long)."""
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {_message(e)}" for e in exc.errors(include_input=False)]
    return f"{exc.title}: " + "; ".join(problems[:10])


def _message(error: Any) -> str:
    if error["type"] == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NO_NUL:
        return "contains a NUL character"
    return str(error["msg"])


def _translate(
    event: ChangeEvent, kafka: KafkaCoordinates, mapping: FieldMapping, own_client_id: str | None
) -> TranslationResult:
    if not is_account(event.entity_name):
        # Person accounts also emit Contact events, lead conversions Lead/Opportunity ones: not ours.
        return TranslationResult(skipped=f"entity {event.entity_name}")
    if own_client_id and f"client={own_client_id}" in event.change_origin:
        return TranslationResult(skipped="echo")
    meta = _metadata(event, kafka)
    kind = event.change_type
    if kind is ChangeType.GAP_OVERFLOW or any(is_wildcard(i) or i == OVERFLOW_ID for i in event.record_ids):
        return TranslationResult([ResyncAllClients(reason=f"{kind.value} {event.record_ids[0]}", change=meta)])
    if kind is ChangeType.SNAPSHOT:
        return TranslationResult(skipped="snapshot change type (reserved by Salesforce)")
    if kind.is_gap:
        marks: list[Command] = [
            MarkClientForResync(client_id=cid, reason=f"{kind.value} event", change=meta) for cid in event.record_ids
        ]
        return TranslationResult([*marks, ResyncClients(client_ids=event.record_ids, reason=kind.value, change=meta)])
    return TranslationResult([_command(kind, cid, event, meta, mapping) for cid in event.record_ids])


def _command(
    kind: ChangeType, client_id: str, event: ChangeEvent, meta: ChangeMetadata, mapping: FieldMapping
) -> Command:
    # `model_validate` of the values: the same validation as the constructor, ~1.5 µs less per model
    if kind is ChangeType.CREATE:
        return RegisterClient.model_validate(
            {"client_id": client_id, "data": _full_record(event, mapping), "change": meta})
    if kind is ChangeType.UNDELETE:
        return RestoreClient.model_validate(
            {"client_id": client_id, "data": _full_record(event, mapping), "change": meta})
    if kind is ChangeType.DELETE:
        return DeleteClient.model_validate({"client_id": client_id, "change": meta})
    changes: dict[str, object] = {}
    diffs: dict[str, str] = {}
    add = mapping.add
    for name, value in event.fields.items():  # the changed ones: `event.changed()` without its copy
        if value is UNCHANGED:  # the parser's one shared value: most fields of an update (an identity test)
            continue
        state = value.state
        if state is _UNCHANGED_STATE:
            continue
        if state is _DIFF:
            attribute = mapping.attribute(name)
            if attribute is not None:
                diffs[attribute] = str(value.value)
        else:
            add(changes, name, value.value if state is _SET else None)
    return ChangeClientDetails.model_validate(
        {"client_id": client_id, "changes": changes, "diffs": diffs, "change": meta})


def _full_record(event: ChangeEvent, mapping: FieldMapping) -> ClientData:
    return mapping.client_data({name: v.value for name, v in event.fields.items() if v.state is _SET})


def _metadata(event: ChangeEvent, kafka: KafkaCoordinates) -> ChangeMetadata:
    last_modified = event.value("LastModifiedDate")
    return ChangeMetadata.model_validate({
        "transaction_key": event.transaction_key,
        "sequence_number": event.sequence_number,
        "commit_timestamp_ms": event.commit_timestamp_ms,
        "commit_number": event.commit_number,
        "commit_user": event.commit_user,
        "change_type": _CHANGE_TYPES[event.change_type],
        "change_origin": event.change_origin,
        "replay_id": event.replay_id,
        "event_id": event.event_id,
        "last_modified_ms": int(last_modified) if isinstance(last_modified, (int, float)) else None,
        "source_topic": kafka.topic,
        "source_partition": kafka.partition,
        "source_offset": kafka.offset,
        "correlation_id": event.transaction_key,
        "causation_id": f"{kafka.topic}:{kafka.partition}:{kafka.offset}",
        "traceparent": kafka.traceparent,
    })


_CHANGE_TYPES = {kind: kind.value for kind in ChangeType}  # a dict lookup, not the enum's `value` property
