"""The client domain: standard library only."""

from worker.domain.errors import DiffMismatch, DomainError, ForbiddenStatusTransition, UnknownAttribute
from worker.domain.events import (
    EVENT_TYPES,
    ClientDeleted,
    ClientDetailsChanged,
    ClientEvent,
    ClientMarkedForResync,
    ClientRegistered,
    ClientRestored,
    ClientResynchronized,
    ClientStatusChanged,
    event_from_payload,
)
from worker.domain.model import ClientAggregate
from worker.domain.services import ClientDomainService
from worker.domain.values import Address, ChangeRef, ClientDetails, ClientStatus, StatusRule, TextDiff

__all__ = [
    "EVENT_TYPES",
    "Address",
    "ChangeRef",
    "ClientAggregate",
    "ClientDeleted",
    "ClientDetails",
    "ClientDetailsChanged",
    "ClientDomainService",
    "ClientEvent",
    "ClientMarkedForResync",
    "ClientRegistered",
    "ClientRestored",
    "ClientResynchronized",
    "ClientStatus",
    "ClientStatusChanged",
    "DiffMismatch",
    "DomainError",
    "ForbiddenStatusTransition",
    "StatusRule",
    "TextDiff",
    "UnknownAttribute",
    "event_from_payload",
]
