"""Domain events: past tense, frozen, versioned, JSON-ready through `to_payload` / `from_payload`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from worker.domain.values import ChangeRef, ClientDetails, ClientStatus

Changes = Mapping[str, tuple[Any, Any]]


def _change_out(change: ChangeRef | None) -> dict[str, Any] | None:
    return change.to_dict() if change is not None else None


def _change_in(data: Any) -> ChangeRef | None:
    return ChangeRef.from_dict(data) if data else None


def _changes_in(data: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {path: (pair[0], pair[1]) for path, pair in data.items()}


@dataclass(frozen=True)
class ClientEvent:
    client_id: str
    event_type: ClassVar[str] = "ClientEvent"
    schema_version: ClassVar[int] = 1

    def to_payload(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def change_ref(self) -> ChangeRef | None:
        return getattr(self, "change", None)


@dataclass(frozen=True)
class ClientRegistered(ClientEvent):
    details: ClientDetails
    status: ClientStatus
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientRegistered"

    def to_payload(self) -> dict[str, Any]:
        return {"details": self.details.to_dict(), "status": self.status.value, "change": _change_out(self.change)}

    @classmethod
    def from_payload(cls, client_id: str, p: Mapping[str, Any]) -> ClientRegistered:
        return cls(client_id, ClientDetails.from_dict(p["details"]), ClientStatus(p["status"]), _change_in(p["change"]))


@dataclass(frozen=True)
class ClientDetailsChanged(ClientEvent):
    changes: Changes
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientDetailsChanged"

    def to_payload(self) -> dict[str, Any]:
        return {"changes": {k: list(v) for k, v in self.changes.items()}, "change": _change_out(self.change)}

    @classmethod
    def from_payload(cls, client_id: str, p: Mapping[str, Any]) -> ClientDetailsChanged:
        return cls(client_id, _changes_in(p["changes"]), _change_in(p["change"]))


@dataclass(frozen=True)
class ClientStatusChanged(ClientEvent):
    old_status: ClientStatus
    new_status: ClientStatus
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientStatusChanged"

    def to_payload(self) -> dict[str, Any]:
        return {"old_status": self.old_status.value, "new_status": self.new_status.value,
                "change": _change_out(self.change)}

    @classmethod
    def from_payload(cls, client_id: str, p: Mapping[str, Any]) -> ClientStatusChanged:
        return cls(client_id, ClientStatus(p["old_status"]), ClientStatus(p["new_status"]), _change_in(p["change"]))


@dataclass(frozen=True)
class ClientDeleted(ClientEvent):
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientDeleted"

    def to_payload(self) -> dict[str, Any]:
        return {"change": _change_out(self.change)}

    @classmethod
    def from_payload(cls, client_id: str, p: Mapping[str, Any]) -> ClientDeleted:
        return cls(client_id, _change_in(p["change"]))


@dataclass(frozen=True)
class ClientRestored(ClientEvent):
    details: ClientDetails
    status: ClientStatus
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientRestored"

    def to_payload(self) -> dict[str, Any]:
        return {"details": self.details.to_dict(), "status": self.status.value, "change": _change_out(self.change)}

    @classmethod
    def from_payload(cls, client_id: str, p: Mapping[str, Any]) -> ClientRestored:
        return cls(client_id, ClientDetails.from_dict(p["details"]), ClientStatus(p["status"]), _change_in(p["change"]))


@dataclass(frozen=True)
class ClientMarkedForResync(ClientEvent):
    reason: str
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientMarkedForResync"

    def to_payload(self) -> dict[str, Any]:
        return {"reason": self.reason, "change": _change_out(self.change)}

    @classmethod
    def from_payload(cls, client_id: str, p: Mapping[str, Any]) -> ClientMarkedForResync:
        return cls(client_id, p["reason"], _change_in(p["change"]))


@dataclass(frozen=True)
class ClientResynchronized(ClientEvent):
    details: ClientDetails | None
    status: ClientStatus
    deleted: bool
    differences: Changes = field(default_factory=dict)
    as_of_ms: int | None = None
    event_type: ClassVar[str] = "ClientResynchronized"

    def to_payload(self) -> dict[str, Any]:
        return {
            "details": self.details.to_dict() if self.details is not None else None,
            "status": self.status.value,
            "deleted": self.deleted,
            "differences": {k: list(v) for k, v in self.differences.items()},
            "as_of_ms": self.as_of_ms,
        }

    @classmethod
    def from_payload(cls, client_id: str, p: Mapping[str, Any]) -> ClientResynchronized:
        details = ClientDetails.from_dict(p["details"]) if p.get("details") is not None else None
        return cls(client_id, details, ClientStatus(p["status"]), bool(p["deleted"]),
                   _changes_in(p.get("differences") or {}), p.get("as_of_ms"))


EVENT_TYPES: dict[str, Any] = {
    cls.event_type: cls
    for cls in (ClientRegistered, ClientDetailsChanged, ClientStatusChanged, ClientDeleted, ClientRestored,
                ClientMarkedForResync, ClientResynchronized)
}


def event_from_payload(event_type: str, payload: Mapping[str, Any], client_id: str | None = None) -> ClientEvent:
    """Rebuild an event from its stored payload (``client_id`` from the payload when not given)."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise LookupError(f"unknown event type {event_type!r}")
    event: ClientEvent = cls.from_payload(client_id or payload["client_id"], payload)
    return event
