"""The typed change event the parser produces: Salesforce's header, and each field set, nulled or unchanged."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ChangeType(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    UNDELETE = "UNDELETE"
    GAP_CREATE = "GAP_CREATE"
    GAP_UPDATE = "GAP_UPDATE"
    GAP_DELETE = "GAP_DELETE"
    GAP_UNDELETE = "GAP_UNDELETE"
    GAP_OVERFLOW = "GAP_OVERFLOW"
    SNAPSHOT = "SNAPSHOT"

    @property
    def is_gap(self) -> bool:
        return self.value.startswith("GAP_") and self is not ChangeType.GAP_OVERFLOW


class FieldState(StrEnum):
    SET = "set"
    NULLED = "nulled"
    DIFF = "diff"  # the value is a unified diff of a long text
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class FieldValue:
    state: FieldState
    value: Any = None


@dataclass(frozen=True)
class ChangeEvent:
    """One CDC message. ``fields`` keys are Salesforce field names, compound parts as `BillingAddress.City`."""

    format: str
    entity_name: str
    change_type: ChangeType
    record_ids: tuple[str, ...]
    change_origin: str
    transaction_key: str
    sequence_number: int
    commit_timestamp_ms: int
    commit_number: int | None
    commit_user: str | None
    replay_id: str | None
    event_id: str | None
    schema_id: str | None
    fields: dict[str, FieldValue] = field(default_factory=dict)

    def value(self, name: str) -> Any:
        found = self.fields.get(name)
        return found.value if found is not None and found.state is FieldState.SET else None

    def changed(self) -> dict[str, FieldValue]:
        return {k: v for k, v in self.fields.items() if v.state is not FieldState.UNCHANGED}
