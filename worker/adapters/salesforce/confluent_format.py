"""Records of the Confluent Salesforce CDC Source connector (JSON, or Avro through the Schema Registry)."""

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


def confluent_event(record: dict[str, Any], schema_id: str | None) -> ChangeEvent:
    """The Confluent connector: every field flattened beside its compound (`BillingStreet` beside
    `BillingAddress`: the twins are ignored); changedFields as names; no nulledFields."""
    header = header_of(record)
    compounds = {k for k, v in record.items() if isinstance(v, dict) and k.endswith("Address")}
    twins = {c[: -len("Address")] + part for c in compounds for part in _ADDRESS_TWIN_PARTS}
    body = {k: v for k, v in record.items() if k not in SYSTEM_KEYS and k not in twins}
    change_type = change_type_of(header)
    listed = list(header.get("changedFields") or [])
    if change_type is ChangeType.UPDATE and listed:
        fields = listed_fields(body, listed, {n for n in listed if lookup(body, n) is None}, set())
    elif change_type in (ChangeType.CREATE, ChangeType.UNDELETE, ChangeType.UPDATE):
        fields = full_fields(body)
    else:
        fields = {}
    event_type = record.get("_EventType")  # a schema-id-like value, never a change type: not routed on
    return change_event("confluent-json" if schema_id is None else "confluent-avro", header, fields,
                  record.get("ReplayId"), None, schema_id or (str(event_type) if event_type else None))


_ADDRESS_TWIN_PARTS = ("Street", "City", "State", "PostalCode", "Country", "StateCode", "CountryCode",
                       "Latitude", "Longitude", "GeocodeAccuracy")
