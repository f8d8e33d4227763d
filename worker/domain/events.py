"""Domain events: past tense, frozen, versioned. Each one's payload is derived from its fields by the domain's
codec (the client id travels beside the payload, as the stream id), so a new field is declared once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from worker.domain.codec import decode, encode
from worker.domain.values import ChangeRef, ClientDetails, ClientStatus

Changes = Mapping[str, tuple[Any, Any]]  # attribute path -> (old value, new value); stored as [old, new]


@dataclass(frozen=True, slots=True)
class ClientEvent:
    client_id: str
    event_type: ClassVar[str] = "ClientEvent"
    schema_version: ClassVar[int] = 1

    def to_payload(self) -> dict[str, Any]:
        """The JSON-ready payload: every field but the client id, in declaration order."""
        payload: dict[str, Any] = encode(self, skip=("client_id",))
        return payload

    @classmethod
    def from_payload(cls, client_id: str, payload: Mapping[str, Any]) -> Self:
        return decode(cls, payload, client_id=client_id)

    @property
    def change_ref(self) -> ChangeRef | None:
        return getattr(self, "change", None)


@dataclass(frozen=True, slots=True)
class ClientRegistered(ClientEvent):
    details: ClientDetails
    status: ClientStatus
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientRegistered"


@dataclass(frozen=True, slots=True)
class ClientDetailsChanged(ClientEvent):
    changes: Changes
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientDetailsChanged"


@dataclass(frozen=True, slots=True)
class ClientStatusChanged(ClientEvent):
    old_status: ClientStatus
    new_status: ClientStatus
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientStatusChanged"


@dataclass(frozen=True, slots=True)
class ClientDeleted(ClientEvent):
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientDeleted"


@dataclass(frozen=True, slots=True)
class ClientRestored(ClientEvent):
    details: ClientDetails
    status: ClientStatus
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientRestored"


@dataclass(frozen=True, slots=True)
class ClientMarkedForResync(ClientEvent):
    reason: str
    change: ChangeRef | None
    event_type: ClassVar[str] = "ClientMarkedForResync"


@dataclass(frozen=True, slots=True)
class ClientResynchronized(ClientEvent):
    details: ClientDetails | None
    status: ClientStatus
    deleted: bool
    differences: Changes = field(default_factory=dict)
    as_of_ms: int | None = None
    event_type: ClassVar[str] = "ClientResynchronized"


EVENT_TYPES: dict[str, type[ClientEvent]] = {
    cls.event_type: cls
    for cls in (ClientRegistered, ClientDetailsChanged, ClientStatusChanged, ClientDeleted, ClientRestored,
                ClientMarkedForResync, ClientResynchronized)
}


def event_from_payload(event_type: str, payload: Mapping[str, Any], client_id: str | None = None) -> ClientEvent:
    """Rebuild an event from its stored payload (``client_id`` from the payload when not given)."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise LookupError(f"unknown event type {event_type!r}")
    return cls.from_payload(client_id or payload["client_id"], payload)
