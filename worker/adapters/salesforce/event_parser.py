"""Kafka record (value bytes + headers) -> one typed `ChangeEvent`, whatever the supported format.

Formats (auto-detected, or named): `pubsub-avro` (raw Avro, schema id in a header), `confluent-avro` (Schema
Registry framing), `pubsub-json` (the Pub/Sub payload as JSON: bitmaps or expanded names, with or without the
`{id, schemaId, replayId, payload}` wrapper), `cometd` (Streaming API, with or without the Bayeux `channel`
wrapper), `confluent-json` (the Confluent Salesforce CDC Source connector, with or without `{schema, payload}`).
Anything else raises a `ChangeEventParseError` subclass carrying the reason.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fastavro

from worker.adapters.salesforce import bitmap
from worker.adapters.salesforce.change_event import ChangeEvent, ChangeType, FieldState, FieldValue
from worker.adapters.salesforce.errors import (
    ChangeEventParseError,
    InvalidChangeEvent,
    UnparseableChangeEvent,
    UnsupportedFormat,
)
from worker.adapters.salesforce.formats import iso_to_ms, unwrap_avro_json
from worker.adapters.salesforce.ids import OVERFLOW_ID, is_wildcard, normalize_id
from worker.adapters.salesforce.schemas import SchemaResolver, WriterSchema

FORMATS = ("auto", "pubsub-avro", "confluent-avro", "pubsub-json", "cometd", "confluent-json")
SCHEMA_ID_HEADERS = ("schema_id", "schemaId", "schema-id")
SYSTEM_KEYS = frozenset({"ChangeEventHeader", "_ObjectType", "_EventType", "ReplayId", "Id"})
_DATA_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError, RecursionError,
                EOFError, UnicodeDecodeError, StopIteration)

Headers = Mapping[str, bytes] | Sequence[tuple[str, bytes | None]] | None


def parse(value: bytes, headers: Headers = None, *, fmt: str = "auto", schemas: SchemaResolver) -> ChangeEvent:
    if fmt not in FORMATS:
        raise UnsupportedFormat(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    head = _headers(headers)
    try:
        return _parse(value, head, fmt, schemas)
    except ChangeEventParseError:
        raise
    except _DATA_ERRORS as exc:
        raise InvalidChangeEvent(f"malformed change event: {type(exc).__name__}: {exc}") from exc


def _headers(headers: Headers) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    out = {}
    for key, raw in items:
        if raw is not None:
            out[key] = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return out


def _parse(value: bytes, headers: dict[str, str], fmt: str, schemas: SchemaResolver) -> ChangeEvent:
    if not value:
        raise UnparseableChangeEvent("empty message value")
    looks_json = value.lstrip()[:1] in (b"{", b"[")
    if fmt == "confluent-avro" or (fmt == "auto" and value[:1] == b"\x00" and len(value) > 5):
        return _confluent_avro(value, schemas)
    if fmt == "pubsub-avro" or (fmt == "auto" and not looks_json):
        schema_id = next((headers[h] for h in SCHEMA_ID_HEADERS if headers.get(h)), None)
        if schema_id is None:
            raise UnsupportedFormat("binary value without a schema_id header: not Pub/Sub Avro, not JSON")
        schema = schemas.get(schema_id)
        record = _avro(value, schema)
        return _pubsub(record, lambda: schema, schema_id, headers.get("replay_id"), headers.get("event_id"),
                       "pubsub-avro")
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnparseableChangeEvent(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UnsupportedFormat(f"a JSON {type(doc).__name__}, not a change event object")
    return _json(doc, fmt, schemas)


def _avro(value: bytes, schema: WriterSchema) -> dict[str, Any]:
    try:
        record = fastavro.schemaless_reader(io.BytesIO(value), schema.parsed, None)
    except Exception as exc:  # fastavro raises many types on bad bytes; all mean the same here
        raise UnparseableChangeEvent(f"Avro does not decode with schema {schema.schema_id}: {exc}") from None
    if not isinstance(record, dict):
        raise UnparseableChangeEvent("Avro value is not a record")
    return record


def _confluent_avro(value: bytes, schemas: SchemaResolver) -> ChangeEvent:
    schema_id = str(int.from_bytes(value[1:5], "big"))
    schema = schemas.get(f"registry:{schema_id}")
    record = _avro(value[5:], schema)
    if "ChangeEventHeader" in record and ("ReplayId" in record or "_ObjectType" in record):
        return _confluent(record, schema_id)
    return _pubsub(record, lambda: schema, schema_id, None, None, "confluent-avro")


def _json(doc: dict[str, Any], fmt: str, schemas: SchemaResolver) -> ChangeEvent:
    data = doc.get("data")
    if fmt in ("auto", "cometd") and isinstance(data, dict) and isinstance(data.get("payload"), dict):
        return _cometd(data)
    if fmt in ("auto", "cometd") and "event" in doc and isinstance(doc.get("payload"), dict) and "schema" in doc:
        return _cometd(doc)
    schema_part = doc.get("schema")
    if fmt in ("auto", "confluent-json") and isinstance(schema_part, dict) and isinstance(doc.get("payload"), dict):
        return _confluent(doc["payload"], None)
    if fmt in ("auto", "confluent-json") and "ChangeEventHeader" in doc and (
        "_ObjectType" in doc or isinstance(doc.get("ReplayId"), str)
    ):
        return _confluent(doc, None)
    if fmt in ("auto", "pubsub-json"):
        wrapped = isinstance(doc.get("payload"), dict) and "ChangeEventHeader" in doc["payload"]
        payload = unwrap_avro_json(doc["payload"] if wrapped else doc)
        if isinstance(payload, dict) and "ChangeEventHeader" in payload:
            schema_id = str(doc["schemaId"]) if wrapped and doc.get("schemaId") else None
            replay = doc.get("replayId") if wrapped else None
            event_id = doc.get("id") if wrapped else None
            # The writer schema is fetched only when bitmaps need it: names already expanded need no Salesforce.
            return _pubsub(payload, lambda: schemas.known(schema_id), schema_id, replay, event_id, "pubsub-json")
    raise UnsupportedFormat(
        "JSON that is none of: Pub/Sub payload, CometD message, Confluent CDC connector record"
        + (f" (forced format {fmt})" if fmt != "auto" else "")
    )


# -- the formats -------------------------------------------------------------------------------------------------


def _pubsub(
    record: dict[str, Any],
    schema: Callable[[], WriterSchema | None],
    schema_id: str | None,
    replay: Any,
    event_id: Any,
    fmt: str,
) -> ChangeEvent:
    """Pub/Sub semantics: every field present; null = unchanged OR nulled, only the header lists decide."""
    header = _header(record)
    lists = [[str(e) for e in header.get(name) or []] for name in ("changedFields", "nulledFields", "diffFields")]
    layout = None
    if any(bitmap.is_bitmap(entries) for entries in lists):
        writer = schema()
        layout = writer.layout if writer else _layout_from_keys(record)
    changed, nulled_list, diff_list = (_names(entries, layout) for entries in lists)
    nulled, diffs = set(nulled_list), set(diff_list)
    body = {k: v for k, v in record.items() if k not in SYSTEM_KEYS}
    change_type = _change_type(header)
    if change_type is ChangeType.UPDATE:
        fields = _listed(body, changed, nulled, diffs)
    elif change_type in (ChangeType.CREATE, ChangeType.UNDELETE):
        fields = _full(body)
    else:
        fields = {}
    return _event(fmt, header, fields, replay, event_id, schema_id)


def _cometd(data: dict[str, Any]) -> ChangeEvent:
    """CometD: absent = unchanged, explicit null = nulled; ISO dates; changedFields only since API 47."""
    payload = data["payload"]
    header = _header(payload)
    body = {k: _cometd_value(k, v) for k, v in payload.items() if k not in SYSTEM_KEYS}
    change_type = _change_type(header)
    listed = header.get("changedFields")
    if change_type is ChangeType.UPDATE and listed:
        fields = _listed(body, list(listed), {n for n in listed if _lookup(body, n) is None}, set())
    elif change_type in (ChangeType.CREATE, ChangeType.UNDELETE, ChangeType.UPDATE):
        fields = _full(body)
    else:
        fields = {}
    replay = (data.get("event") or {}).get("replayId")
    return _event("cometd", header, fields, replay, None, data.get("schema"))


def _confluent(record: dict[str, Any], schema_id: str | None) -> ChangeEvent:
    """The Confluent connector: every field flattened beside its compound (`BillingStreet` beside
    `BillingAddress`: the twins are ignored); changedFields as names; no nulledFields."""
    header = _header(record)
    compounds = {k for k, v in record.items() if isinstance(v, dict) and k.endswith("Address")}
    twins = {c[: -len("Address")] + part for c in compounds for part in _ADDRESS_TWIN_PARTS}
    body = {k: v for k, v in record.items() if k not in SYSTEM_KEYS and k not in twins}
    change_type = _change_type(header)
    listed = list(header.get("changedFields") or [])
    if change_type is ChangeType.UPDATE and listed:
        fields = _listed(body, listed, {n for n in listed if _lookup(body, n) is None}, set())
    elif change_type in (ChangeType.CREATE, ChangeType.UNDELETE, ChangeType.UPDATE):
        fields = _full(body)
    else:
        fields = {}
    event_type = record.get("_EventType")  # a schema-id-like value, never a change type: not routed on
    return _event("confluent-json" if schema_id is None else "confluent-avro", header, fields,
                  record.get("ReplayId"), None, schema_id or (str(event_type) if event_type else None))


_ADDRESS_TWIN_PARTS = ("Street", "City", "State", "PostalCode", "Country", "StateCode", "CountryCode",
                       "Latitude", "Longitude", "GeocodeAccuracy")


# -- shared steps ------------------------------------------------------------------------------------------------


def _header(record: Mapping[str, Any]) -> dict[str, Any]:
    header = record.get("ChangeEventHeader")
    if not isinstance(header, dict):
        raise InvalidChangeEvent("no ChangeEventHeader object")
    return dict(unwrap_avro_json(header))


def _change_type(header: Mapping[str, Any]) -> ChangeType:
    raw = header.get("changeType")
    try:
        return ChangeType(str(raw).upper())
    except ValueError:
        raise InvalidChangeEvent(f"unknown changeType {raw!r}") from None


def _names(entries: Sequence[Any], layout: bitmap.FieldLayout | None) -> list[str]:
    strings = [str(e) for e in entries]
    if not bitmap.is_bitmap(strings):
        return strings
    if layout is None:
        raise InvalidChangeEvent("bitmap fields without a writer schema to decode them against")
    return bitmap.decode(strings, layout)


def _layout_from_keys(record: Mapping[str, Any]) -> bitmap.FieldLayout:
    """Salesforce's sample clients keep the schema's key order when they print a payload."""
    nested = {k: tuple(v) for k, v in record.items() if isinstance(v, dict) and k != "ChangeEventHeader"}
    return bitmap.FieldLayout(tuple(record), nested)


def _lookup(body: Mapping[str, Any], name: str) -> Any:
    parent, _, child = name.partition(".")
    value = body.get(parent)
    if child:
        return value.get(child) if isinstance(value, dict) else None
    return value


def _listed(body: dict[str, Any], changed: Sequence[str], nulled: set[str], diffs: set[str]) -> dict[str, FieldValue]:
    """UPDATE: only the listed fields; a listed compound parent means all its parts."""
    fields: dict[str, FieldValue] = {}
    for name in changed:
        value = body.get(name)
        parts = [f"{name}.{k}" for k in value] if isinstance(value, dict) and "." not in name else [name]
        for part in parts:
            if part in diffs:
                fields[part] = FieldValue(FieldState.DIFF, _lookup(body, part))
            elif part in nulled or name in nulled or _lookup(body, part) is None:
                fields[part] = FieldValue(FieldState.NULLED)
            else:
                fields[part] = FieldValue(FieldState.SET, _lookup(body, part))
    covered = {key.split(".", 1)[0] for key in fields}  # a listed part covers its compound field
    for name in body:
        if name not in covered:
            fields[name] = FieldValue(FieldState.UNCHANGED)
    return fields


def _full(body: dict[str, Any]) -> dict[str, FieldValue]:
    """CREATE / UNDELETE carry the whole record: a null is an empty field."""
    fields: dict[str, FieldValue] = {}
    for name, value in body.items():
        if isinstance(value, dict) and name != "Name":
            for part, inner in value.items():
                fields[f"{name}.{part}"] = FieldValue(FieldState.SET if inner is not None else FieldState.NULLED, inner)
        else:
            fields[name] = FieldValue(FieldState.SET if value is not None else FieldState.NULLED, value)
    return fields


def _cometd_value(name: str, value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"diff"}:
        return value["diff"]
    if name.endswith("Date") and isinstance(value, str):
        return iso_to_ms(value)
    return value


def _event(
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
        change_type=_change_type(header),
        record_ids=ids,
        change_origin=str(header.get("changeOrigin") or ""),
        transaction_key=str(header["transactionKey"]),
        sequence_number=int(header.get("sequenceNumber") or 0),
        commit_timestamp_ms=_ms(header["commitTimestamp"]),
        commit_number=int(commit_number) if commit_number is not None else None,
        commit_user=header.get("commitUser"),
        replay_id=str(replay) if replay is not None else None,
        event_id=str(event_id) if event_id is not None else None,
        schema_id=str(schema_id) if schema_id is not None else None,
        fields=fields,
    )


def _ms(value: Any) -> int:
    return iso_to_ms(value) if isinstance(value, str) and not value.isdigit() else int(value)
