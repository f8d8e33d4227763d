"""Encoding change events as Salesforce's Pub/Sub API delivers them: raw Avro (no container header), with the
bitmap fields over the writer schema. Used by `worker cdc produce`, the demo and the benchmark."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import fastavro

from worker.adapters.salesforce.bitmap import FieldLayout


def encode_record(schema: Any, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema) if isinstance(schema, dict) else schema, record)
    return out.getvalue()


def bitmap_of(names: Sequence[str], layout: FieldLayout) -> list[str]:
    """`["0x…", "P-0x…"]` for field names (compound parts as `Parent.Child`): the inverse of bitmap.decode."""
    top = 0
    nested: dict[int, int] = {}
    for name in names:
        parent, _, child = name.partition(".")
        position = layout.names.index(parent)
        if child:
            nested[position] = nested.get(position, 0) | (1 << layout.nested[parent].index(child))
        else:
            top |= 1 << position
    entries = [f"0x{top:X}"] if top else []
    entries += [f"{p}-0x{bits:02X}" for p, bits in sorted(nested.items())]
    return entries


def pubsub_messages(data: bytes) -> Iterator[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """An Avro container file of change events: each record re-encoded as a Pub/Sub payload (raw Avro), keyed by
    its first record id, with the file's `salesforce.schema_id` metadata as its schema_id header."""
    reader = fastavro.reader(io.BytesIO(data))
    schema_id = (reader.metadata.get("salesforce.schema_id") or "AccountChangeEvent-v1")
    for record in reader:
        if not isinstance(record, dict):
            raise ValueError("an Avro file of change events holds records only")
        ids = record["ChangeEventHeader"]["recordIds"]
        yield (ids[0].encode() if ids else None, encode_record(reader.writer_schema, record),
               [("schema_id", schema_id.encode())])
