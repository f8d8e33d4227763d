"""Encoding change events as Salesforce's Pub/Sub API delivers them: raw Avro (no container header), with the
bitmap fields over the writer schema. Used by `worker cdc produce`, the demo and the benchmark."""

from __future__ import annotations

import io
from collections.abc import Sequence
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
