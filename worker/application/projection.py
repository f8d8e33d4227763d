"""The client projection, pure: (current summary row, event) -> new row + status-history rows.

Rows are plain dicts keyed by read-model column; the Postgres adapter loads and writes them in bulk. The version
guard makes redelivery a no-op and refuses to apply across a gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

ADDRESS_COLUMNS = {
    "street": "billing_street",
    "city": "billing_city",
    "state": "billing_state",
    "postal_code": "billing_postal_code",
    "country": "billing_country",
    "state_code": "billing_state_code",
    "country_code": "billing_country_code",
    "latitude": "billing_latitude",
    "longitude": "billing_longitude",
    "geocode_accuracy": "billing_geocode_accuracy",
}
PLAIN_COLUMNS = (
    "name", "type", "industry", "phone", "website", "owner_id", "annual_revenue", "employees", "rating",
    "account_source", "parent_id", "active",
)
SUMMARY_COLUMNS = (
    "client_id", "registered", *PLAIN_COLUMNS, "status", *ADDRESS_COLUMNS.values(), "extra", "deleted",
    "needs_resync", "version", "last_change_at",
)


class Verdict(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    GAP = "gap"


@dataclass(frozen=True)
class ProjectedEvent:
    event_id: str
    event_type: str
    client_id: str
    version: int
    payload: Mapping[str, Any]


@dataclass
class ProjectionResult:
    verdict: Verdict
    row: dict[str, Any] | None
    history: list[dict[str, Any]] = field(default_factory=list)


def empty_row(client_id: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(client_id=client_id, registered=False, status="unknown", extra={}, deleted=False,
               needs_resync=False, version=0)
    return row


def project(row: Mapping[str, Any] | None, event: ProjectedEvent) -> ProjectionResult:
    current = dict(row) if row is not None else empty_row(event.client_id)
    if event.version <= current["version"]:
        return ProjectionResult(Verdict.DUPLICATE, None)
    if event.version != current["version"] + 1:
        return ProjectionResult(Verdict.GAP, None)
    apply = _APPLIERS.get(event.event_type)
    if apply is None:
        raise LookupError(f"no projection for event type {event.event_type}")
    history = apply(current, event.payload)
    current["version"] = event.version
    change = event.payload.get("change") or {}
    stamp = change.get("commit_timestamp_ms") or event.payload.get("as_of_ms")
    if stamp:
        current["last_change_at"] = datetime.fromtimestamp(stamp / 1000, UTC)
    for item in history:
        item.update(client_id=event.client_id, version=event.version, event_id=event.event_id,
                    changed_at=current["last_change_at"])
    return ProjectionResult(Verdict.APPLIED, current, history)


def _set_details(row: dict[str, Any], details: Mapping[str, Any]) -> None:
    for column in PLAIN_COLUMNS:
        row[column] = details.get(column)
    address = details.get("billing_address") or {}
    for part, column in ADDRESS_COLUMNS.items():
        row[column] = address.get(part)
    row["extra"] = dict(details.get("extra") or {})


def _set_attribute(row: dict[str, Any], path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if head == "billing_address" and rest in ADDRESS_COLUMNS:
        row[ADDRESS_COLUMNS[rest]] = value
    elif head == "extra" and rest:
        row["extra"] = {**row["extra"], rest: value}
    elif head in PLAIN_COLUMNS and not rest:
        row[head] = value
    else:
        raise LookupError(f"no read-model column for attribute {path!r}")


def _status_change(row: dict[str, Any], new: str) -> list[dict[str, Any]]:
    old = row["status"]
    row["status"] = new
    return [] if old == new else [{"old_status": old, "new_status": new}]


def _registered(row: dict[str, Any], payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    _set_details(row, payload["details"])
    row.update(registered=True, deleted=False)
    return _status_change(row, payload["status"])


def _details_changed(row: dict[str, Any], payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    for path, (_old, new) in payload["changes"].items():
        _set_attribute(row, path, new)
    return []


def _status_changed(row: dict[str, Any], payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _status_change(row, payload["new_status"])


def _deleted(row: dict[str, Any], _payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    row["deleted"] = True
    return []


def _marked(row: dict[str, Any], _payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    row["needs_resync"] = True
    return []


def _resynchronized(row: dict[str, Any], payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    if payload.get("details") is not None:
        _set_details(row, payload["details"])
        row["registered"] = True
    row.update(deleted=bool(payload["deleted"]), needs_resync=False)
    return _status_change(row, payload["status"])


_APPLIERS = {
    "ClientRegistered": _registered,
    "ClientRestored": _registered,
    "ClientDetailsChanged": _details_changed,
    "ClientStatusChanged": _status_changed,
    "ClientDeleted": _deleted,
    "ClientMarkedForResync": _marked,
    "ClientResynchronized": _resynchronized,
}


class VersionGap(Exception):
    """An event arrived whose version does not follow the projected one: reported, never applied."""
