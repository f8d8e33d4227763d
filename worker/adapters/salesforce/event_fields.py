"""The steps every wire format of a change event shares: the header, the change type, which fields an UPDATE
lists and which a full record carries, and the typed `ChangeEvent` at the end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.adapters.salesforce.change_event import ChangeEvent, ChangeType, FieldState, FieldValue
from worker.adapters.salesforce.errors import InvalidChangeEvent
from worker.adapters.salesforce.formats import iso_to_ms, unwrap_avro_json
from worker.adapters.salesforce.ids import OVERFLOW_ID, is_wildcard, normalize_id

SYSTEM_KEYS = frozenset({"ChangeEventHeader", "_ObjectType", "_EventType", "ReplayId", "Id"})


def header_of(record: Mapping[str, Any]) -> dict[str, Any]:
    header = record.get("ChangeEventHeader")
    if not isinstance(header, dict):
        raise InvalidChangeEvent("no ChangeEventHeader object")
    return dict(unwrap_avro_json(header))


def change_type_of(header: Mapping[str, Any]) -> ChangeType:
    raw = header.get("changeType")
    try:
        return ChangeType(str(raw).upper())
    except ValueError:
        raise InvalidChangeEvent(f"unknown changeType {raw!r}") from None


def lookup(body: Mapping[str, Any], name: str) -> Any:
    parent, _, child = name.partition(".")
    value = body.get(parent)
    if child:
        return value.get(child) if isinstance(value, dict) else None
    return value


def listed_fields(
    body: dict[str, Any], changed: Sequence[str], nulled: set[str], diffs: set[str]
) -> dict[str, FieldValue]:
    """UPDATE: only the listed fields; a listed compound parent means all its parts."""
    fields: dict[str, FieldValue] = {}
    for name in changed:
        value = body.get(name)
        parts = [f"{name}.{k}" for k in value] if isinstance(value, dict) and "." not in name else [name]
        for part in parts:
            if part in diffs:
                fields[part] = FieldValue(FieldState.DIFF, lookup(body, part))
            elif part in nulled or name in nulled or lookup(body, part) is None:
                fields[part] = FieldValue(FieldState.NULLED)
            else:
                fields[part] = FieldValue(FieldState.SET, lookup(body, part))
    covered = {key.split(".", 1)[0] for key in fields}  # a listed part covers its compound field
    for name in body:
        if name not in covered:
            fields[name] = FieldValue(FieldState.UNCHANGED)
    return fields


def full_fields(body: dict[str, Any]) -> dict[str, FieldValue]:
    """CREATE / UNDELETE carry the whole record: a null is an empty field."""
    fields: dict[str, FieldValue] = {}
    for name, value in body.items():
        if isinstance(value, dict) and name != "Name":
            for part, inner in value.items():
                fields[f"{name}.{part}"] = FieldValue(FieldState.SET if inner is not None else FieldState.NULLED, inner)
        else:
            fields[name] = FieldValue(FieldState.SET if value is not None else FieldState.NULLED, value)
    return fields


def change_event(
    fmt: str, header: Mapping[str, Any], fields: dict[str, FieldValue], replay: Any, event_id: Any, schema_id: Any
) -> ChangeEvent:
    raw_ids = header.get("recordIds")
    if not isinstance(raw_ids, list) or not raw_ids:
        raise InvalidChangeEvent("recordIds is missing or empty")
    ids = tuple(str(i) if is_wildcard(str(i)) or str(i) == OVERFLOW_ID else normalize_id(str(i)) for i in raw_ids)
    for required in ("entityName", "transactionKey", "commitTimestamp"):
        if header.get(required) in (None, ""):
            raise InvalidChangeEvent(f"ChangeEventHeader.{required} is missing")
    commit_number = header.get("commitNumber")
    return ChangeEvent(
        format=fmt,
        entity_name=str(header["entityName"]),
        change_type=change_type_of(header),
        record_ids=ids,
        change_origin=str(header.get("changeOrigin") or ""),
        transaction_key=str(header["transactionKey"]),
        sequence_number=int(header.get("sequenceNumber") or 0),
        commit_timestamp_ms=to_ms(header["commitTimestamp"]),
        commit_number=int(commit_number) if commit_number is not None else None,
        commit_user=header.get("commitUser"),
        replay_id=str(replay) if replay is not None else None,
        event_id=str(event_id) if event_id is not None else None,
        schema_id=str(schema_id) if schema_id is not None else None,
        fields=fields,
    )


def to_ms(value: Any) -> int:
    return iso_to_ms(value) if isinstance(value, str) and not value.isdigit() else int(value)
