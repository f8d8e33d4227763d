"""Pub/Sub API change events (Avro, or its JSON rendering): every field is present, a null means unchanged OR
nulled, and only the header's lists (names, or bitmaps over the writer schema) decide which."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from worker.adapters.salesforce import bitmap
from worker.adapters.salesforce.change_event import ChangeEvent, ChangeType
from worker.adapters.salesforce.errors import InvalidChangeEvent
from worker.adapters.salesforce.event_fields import (
    SYSTEM_KEYS,
    change_event,
    change_type_of,
    full_fields,
    header_of,
    listed_fields,
)
from worker.adapters.salesforce.schemas import WriterSchema

_LISTS = ("changedFields", "nulledFields", "diffFields")


def pubsub_event(
    record: dict[str, Any],
    schema: Callable[[], WriterSchema | None],
    schema_id: str | None,
    replay: Any,
    event_id: Any,
    fmt: str,
) -> ChangeEvent:
    """Pub/Sub semantics: every field present; null = unchanged OR nulled, only the header lists decide."""
    header = header_of(record)
    lists = [tuple(map(str, header.get(name) or ())) for name in _LISTS]
    bitmaps = [bool(entries) and bitmap.is_bitmap(entries) for entries in lists]
    layout = None
    if any(bitmaps):
        writer = schema()
        layout = writer.layout if writer else layout_from_keys(record)
    changed, nulled_list, diff_list = (_decoded(entries, layout) if is_bitmap else list(entries)
                                       for entries, is_bitmap in zip(lists, bitmaps, strict=True))
    change_type = change_type_of(header)
    if change_type is ChangeType.UPDATE:
        body = {k: v for k, v in record.items() if k not in SYSTEM_KEYS}
        fields = listed_fields(body, changed, set(nulled_list), set(diff_list))
    elif change_type in (ChangeType.CREATE, ChangeType.UNDELETE):
        fields = full_fields({k: v for k, v in record.items() if k not in SYSTEM_KEYS})
    else:
        fields = {}
    return change_event(fmt, header, fields, replay, event_id, schema_id, change_type)


def field_names(entries: Sequence[Any], layout: bitmap.FieldLayout | None) -> list[str]:
    strings = tuple(map(str, entries))
    return _decoded(strings, layout) if bitmap.is_bitmap(strings) else list(strings)


def _decoded(entries: tuple[str, ...], layout: bitmap.FieldLayout | None) -> list[str]:
    if layout is None:
        raise InvalidChangeEvent("bitmap fields without a writer schema to decode them against")
    return layout.decode(entries)


def layout_from_keys(record: Mapping[str, Any]) -> bitmap.FieldLayout:
    """Salesforce's sample clients keep the schema's key order when they print a payload."""
    nested = {k: tuple(v) for k, v in record.items() if isinstance(v, dict) and k != "ChangeEventHeader"}
    return bitmap.FieldLayout(tuple(record), nested)
