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
# Field values are frozen: most fields of most events share these two.
UNCHANGED = FieldValue(FieldState.UNCHANGED)
NULLED = FieldValue(FieldState.NULLED)


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
        if "." in name:
            fields[name] = _listed(name, lookup(body, name), name in nulled, diffs)
        elif isinstance(value, dict):
            parent_nulled = name in nulled
            for key, inner in value.items():
                part = f"{name}.{key}"
                if not key:  # `Parent.` names the compound itself, as `lookup` reads it
                    inner = value
                fields[part] = _listed(part, inner, parent_nulled or part in nulled, diffs)
        else:
            fields[name] = _listed(name, value, name in nulled, diffs)
    covered = {key.split(".", 1)[0] for key in fields}  # a listed part covers its compound field
    for name in body:
        if name not in covered:
            fields[name] = UNCHANGED
    return fields


def _listed(name: str, value: Any, nulled: bool, diffs: set[str]) -> FieldValue:
    if name in diffs:
        return FieldValue(FieldState.DIFF, value)
    if nulled or value is None:
        return NULLED
    return FieldValue(FieldState.SET, value)


def full_fields(body: dict[str, Any]) -> dict[str, FieldValue]:
    """CREATE / UNDELETE carry the whole record: a null is an empty field."""
    fields: dict[str, FieldValue] = {}
    for name, value in body.items():
        if isinstance(value, dict) and name != "Name":
            for part, inner in value.items():
                fields[f"{name}.{part}"] = NULLED if inner is None else FieldValue(FieldState.SET, inner)
        else:
            fields[name] = NULLED if value is None else FieldValue(FieldState.SET, value)
    return fields


def change_event(
    fmt: str, header: Mapping[str, Any], fields: dict[str, FieldValue], replay: Any, event_id: Any, schema_id: Any,
    change_type: ChangeType | None = None,
) -> ChangeEvent:
    """``change_type``: the header's, when the caller has read it already."""
    raw_ids = header.get("recordIds")
    if not isinstance(raw_ids, list) or not raw_ids:
        raise InvalidChangeEvent("recordIds is missing or empty")
    ids = tuple(_record_id(str(i)) for i in raw_ids)
    for required in ("entityName", "transactionKey", "commitTimestamp"):
        if header.get(required) in (None, ""):
            raise InvalidChangeEvent(f"ChangeEventHeader.{required} is missing")
    commit_number = header.get("commitNumber")
    return ChangeEvent(
        format=fmt,
        entity_name=str(header["entityName"]),
        change_type=change_type or change_type_of(header),
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


def _record_id(text: str) -> str:
    return text if is_wildcard(text) or text == OVERFLOW_ID else normalize_id(text)


def to_ms(value: Any) -> int:
    return iso_to_ms(value) if isinstance(value, str) and not value.isdigit() else int(value)
