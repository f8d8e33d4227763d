"""Kafka record (value bytes + headers) -> one typed `ChangeEvent`, whatever the supported format.

Formats (auto-detected, or named): `pubsub-avro` (raw Avro, schema id in a header), `confluent-avro` (Schema
Registry framing), `pubsub-json` (the Pub/Sub payload as JSON: bitmaps or expanded names, with or without the
`{id, schemaId, replayId, payload}` wrapper), `cometd` (Streaming API, with or without the Bayeux `channel`
wrapper), `confluent-json` (the Confluent Salesforce CDC Source connector, with or without `{schema, payload}`).
Anything else raises a `ChangeEventParseError` subclass carrying the reason. This module detects the format
and decodes the bytes; each format's meaning is in its own module (`pubsub_format`, `cometd_format`,
`confluent_format`), the steps they share in `event_fields`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import fastavro

from worker.adapters.salesforce.change_event import ChangeEvent
from worker.adapters.salesforce.cometd_format import cometd_event
from worker.adapters.salesforce.confluent_format import confluent_event
from worker.adapters.salesforce.errors import (
    ChangeEventParseError,
    InvalidChangeEvent,
    UnparseableChangeEvent,
    UnsupportedFormat,
)
from worker.adapters.salesforce.formats import unwrap_avro_json
from worker.adapters.salesforce.pubsub_format import pubsub_event
from worker.adapters.salesforce.schemas import SchemaResolver, WriterSchema

FORMATS = ("auto", "pubsub-avro", "confluent-avro", "pubsub-json", "cometd", "confluent-json")
SCHEMA_ID_HEADERS = ("schema_id", "schemaId", "schema-id")
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
        return pubsub_event(record, lambda: schema, schema_id, headers.get("replay_id"), headers.get("event_id"),
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
        return confluent_event(record, schema_id)
    return pubsub_event(record, lambda: schema, schema_id, None, None, "confluent-avro")


def _json(doc: dict[str, Any], fmt: str, schemas: SchemaResolver) -> ChangeEvent:
    data = doc.get("data")
    if fmt in ("auto", "cometd") and isinstance(data, dict) and isinstance(data.get("payload"), dict):
        return cometd_event(data)
    if fmt in ("auto", "cometd") and "event" in doc and isinstance(doc.get("payload"), dict) and "schema" in doc:
        return cometd_event(doc)
    schema_part = doc.get("schema")
    if fmt in ("auto", "confluent-json") and isinstance(schema_part, dict) and isinstance(doc.get("payload"), dict):
        return confluent_event(doc["payload"], None)
    if fmt in ("auto", "confluent-json") and "ChangeEventHeader" in doc and (
        "_ObjectType" in doc or isinstance(doc.get("ReplayId"), str)
    ):
        return confluent_event(doc, None)
    if fmt in ("auto", "pubsub-json"):
        wrapped = isinstance(doc.get("payload"), dict) and "ChangeEventHeader" in doc["payload"]
        payload = unwrap_avro_json(doc["payload"] if wrapped else doc)
        if isinstance(payload, dict) and "ChangeEventHeader" in payload:
            schema_id = str(doc["schemaId"]) if wrapped and doc.get("schemaId") else None
            replay = doc.get("replayId") if wrapped else None
            event_id = doc.get("id") if wrapped else None
            # The writer schema is fetched only when bitmaps need it: names already expanded need no Salesforce.
            return pubsub_event(payload, lambda: schemas.known(schema_id), schema_id, replay, event_id, "pubsub-json")
    raise UnsupportedFormat(
        "JSON that is none of: Pub/Sub payload, CometD message, Confluent CDC connector record"
        + (f" (forced format {fmt})" if fmt != "auto" else "")
    )
