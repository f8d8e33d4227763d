"""Streaming API (CometD) change events: an absent field is unchanged, an explicit null is nulled; dates are
ISO-8601; `changedFields` only since API 47."""

from __future__ import annotations

from typing import Any

from worker.adapters.salesforce.change_event import ChangeEvent, ChangeType
from worker.adapters.salesforce.event_fields import (
    SYSTEM_KEYS,
    change_event,
    change_type_of,
    full_fields,
    header_of,
    listed_fields,
    lookup,
)
from worker.adapters.salesforce.formats import iso_to_ms


def cometd_event(data: dict[str, Any]) -> ChangeEvent:
    """CometD: absent = unchanged, explicit null = nulled; ISO dates; changedFields only since API 47."""
    payload = data["payload"]
    header = header_of(payload)
    body = {k: _cometd_value(k, v) for k, v in payload.items() if k not in SYSTEM_KEYS}
    change_type = change_type_of(header)
    listed = header.get("changedFields")
    if change_type is ChangeType.UPDATE and listed:
        fields = listed_fields(body, list(listed), {n for n in listed if lookup(body, n) is None}, set())
    elif change_type in (ChangeType.CREATE, ChangeType.UNDELETE, ChangeType.UPDATE):
        fields = full_fields(body)
    else:
        fields = {}
    replay = (data.get("event") or {}).get("replayId")
    return change_event("cometd", header, fields, replay, None, data.get("schema"), change_type)


def _cometd_value(name: str, value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"diff"}:
        return value["diff"]
    if name.endswith("Date") and isinstance(value, str):
        return iso_to_ms(value)
    return value
