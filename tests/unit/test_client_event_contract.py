"""The `client.events` contract: the Avro writer schemas in schemas/client/ and the domain events agree.

For every event type at its current schema version: every payload field has its Avro field with a compatible
type, every Avro field is in the payload (or the envelope the relay adds), and a sample of each shape survives
the codec's round trip (domain payload -> Avro bytes -> payload -> the same event)."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import is_dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Union, get_args, get_origin

import pytest

from tests.event_samples import CLIENT_ID, FULL, SPARSE
from worker.adapters.avro import ClientEventCodec, to_wire
from worker.adapters.postgres.outbox import OutboxRow
from worker.domain import EVENT_TYPES, event_from_payload
from worker.domain.codec import field_types

CODEC = ClientEventCodec.from_directory()
ENVELOPE = {"event_id": "string", "client_id": "string", "version": "int", "recorded_at": "long"}
# Wire shapes of two domain types (worker/adapters/avro.py `to_wire`): values JSON-encoded as strings.
FIELD_CHANGE = {"attribute": "string", "old": ("null", "string"), "new": ("null", "string")}
NUMBERS: dict[type, tuple[str, ...]] = {str: ("string",), int: ("int", "long"), float: ("double", "float"),
                                        bool: ("boolean",)}


def mismatches(hint: Any, avro: Any, names: Mapping[str, Any], where: str) -> list[str]:
    """Why the Avro type ``avro`` cannot carry values of the domain type ``hint`` (empty: it can)."""
    avro = names.get(avro, avro) if isinstance(avro, str) else avro
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        branches = [b for b in avro if b != "null"] if isinstance(avro, list) else []
        if len(kinds) != 1 or "null" not in avro or len(branches) != 1:
            return [f"{where}: optional {hint} needs an Avro union of null and one type, has {avro}"]
        return mismatches(kinds[0], branches[0], names, where)
    if isinstance(avro, list):
        return [f"{where}: required {hint} is an Avro union {avro}"]
    kind = avro["type"] if isinstance(avro, dict) else avro
    if isinstance(hint, type) and is_dataclass(hint):
        if kind != "record":
            return [f"{where}: {hint.__name__} needs an Avro record, has {kind}"]
        return record_mismatches(field_types(hint), avro, names, where)
    if isinstance(hint, type) and issubclass(hint, Enum):
        symbols = set(avro.get("symbols", ())) if kind == "enum" else None
        ok = kind == "string" or (symbols is not None and {m.value for m in hint} <= symbols)
        return [] if ok else [f"{where}: {hint.__name__} needs a string or an enum of its values, has {kind}"]
    if origin in (Mapping, dict) and args[1] == tuple[Any, Any]:  # attribute path -> (old, new)
        items = avro.get("items") if kind == "array" else None
        items = names.get(items, items) if isinstance(items, str) else items
        got = {f["name"]: tuple(f["type"]) if isinstance(f["type"], list) else f["type"]
               for f in (items or {}).get("fields", [])}
        return [] if got == FIELD_CHANGE else [f"{where}: changes need an array of {FIELD_CHANGE}, has {avro}"]
    if origin in (Mapping, dict) and args == (str, Any):  # extra: JSON-encoded values
        ok = kind == "map" and avro["values"] == "string"
        return [] if ok else [f"{where}: a bag of any values needs a map of JSON strings, has {avro}"]
    if hint in NUMBERS:
        logical = avro.get("logicalType") if isinstance(avro, dict) else None
        ok = kind in NUMBERS[hint] and logical is None
        return [] if ok else [f"{where}: {hint.__name__} does not fit Avro {avro}"]
    return [f"{where}: no Avro rule for the domain type {hint}"]


def record_mismatches(hints: Mapping[str, Any], record: Mapping[str, Any], names: Mapping[str, Any],
                      where: str, envelope: Mapping[str, str] | None = None) -> list[str]:
    avro = {f["name"]: f["type"] for f in record["fields"]}
    problems = [f"{where}.{name}: in the payload, not in the Avro schema" for name in hints if name not in avro]
    problems += [f"{where}.{name}: in the Avro schema, not in the payload"
                 for name in avro if name not in hints and name not in (envelope or {})]
    for name, hint in hints.items():
        if name in avro:
            problems += mismatches(hint, avro[name], names, f"{where}.{name}")
    for name, kind in (envelope or {}).items():
        got = avro.get(name)
        if (got["type"] if isinstance(got, dict) else got) != kind:
            problems.append(f"{where}.{name}: the envelope needs {kind}, has {got}")
    return problems


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_the_avro_schema_and_the_domain_event_agree(event_type: str) -> None:
    cls = EVENT_TYPES[event_type]
    schema = CODEC.schema(event_type, cls.schema_version)
    payload_fields = {name: hint for name, hint in field_types(cls).items() if name != "client_id"}
    assert record_mismatches(payload_fields, schema, schema["__named_schemas"], event_type, ENVELOPE) == []

    recorded = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    for sample in (FULL[event_type], SPARSE[event_type]):
        payload = sample.to_payload()
        assert set(payload) == set(payload_fields)
        row = OutboxRow(1, "6f1c0f52-6f0b-4b8e-9d43-0d5f2e7c9a10", CLIENT_ID, 7, event_type, cls.schema_version,
                        payload, {}, recorded)
        record = CODEC.decode(CODEC.encode_row(row), event_type, cls.schema_version)
        assert {k: record[k] for k in ENVELOPE} == {"event_id": row.event_id, "client_id": CLIENT_ID, "version": 7,
                                                    "recorded_at": recorded.isoformat()}
        wire_payload = {k: v for k, v in record.items() if k not in ENVELOPE}
        assert set(wire_payload) == set(payload)
        assert event_from_payload(event_type, wire_payload, record["client_id"]) == sample


def test_the_contract_check_catches_a_drifted_schema() -> None:
    schema = CODEC.schema("ClientMarkedForResync", 1)
    drifted = {**schema, "fields": [
        *[f for f in schema["fields"] if f["name"] != "reason"],
        {"name": "reason", "type": "long"},
        {"name": "priority", "type": "int"},
    ]}
    fields = {n: h for n, h in field_types(EVENT_TYPES["ClientMarkedForResync"]).items() if n != "client_id"}
    problems = record_mismatches(fields, drifted, schema["__named_schemas"], "ClientMarkedForResync", ENVELOPE)
    assert problems == [
        "ClientMarkedForResync.priority: in the Avro schema, not in the payload",
        "ClientMarkedForResync.reason: str does not fit Avro long",
    ]


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_naming_the_union_record_writes_the_bytes_fastavro_would_choose(event_type: str) -> None:
    """The codec names the record of a null-or-record union (fastavro's tuple notation) instead of letting
    fastavro find the branch by validating the value: the same bytes, and a value that is no such record is
    still refused."""
    import io

    import fastavro

    cls = EVENT_TYPES[event_type]
    schema = CODEC.schema(event_type, cls.schema_version)
    envelope = {"event_id": "6f1c0f52-6f0b-4b8e-9d43-0d5f2e7c9a10", "client_id": CLIENT_ID, "version": 7,
                "recorded_at": datetime(2024, 5, 1, tzinfo=UTC)}
    for sample in (FULL[event_type], SPARSE[event_type]):
        record = {**to_wire(sample.to_payload()), **envelope}
        plain = io.BytesIO()
        fastavro.schemaless_writer(plain, schema, record)
        assert CODEC.encode(event_type, cls.schema_version, record) == plain.getvalue()
    named = [f["name"] for f in schema["fields"] if isinstance(f["type"], list)
             and any(isinstance(b, dict) and b.get("type") == "record" for b in f["type"])]
    assert named, f"{event_type} has no null-or-record union"
    broken = {**to_wire(FULL[event_type].to_payload()), **envelope, named[0]: {"unrelated": 1}}
    with pytest.raises((ValueError, TypeError, KeyError)):
        CODEC.encode(event_type, cls.schema_version, broken)
