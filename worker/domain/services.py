"""ClientDomainService: decisions that need more than one aggregate or an outside fact, passed in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from worker.domain.errors import ForbiddenStatusTransition
from worker.domain.events import Changes, ClientDetailsChanged, ClientEvent, ClientStatusChanged
from worker.domain.values import ChangeRef, ClientDetails, ClientStatus, StatusRule, frozen_constructor


class KnownClient(Protocol):
    """What a decision needs to know of an existing client (the aggregate is one), so this module does not
    depend on the aggregate that calls it."""

    @property
    def client_id(self) -> str: ...

    @property
    def details(self) -> ClientDetails: ...

    @property
    def status(self) -> ClientStatus: ...


class ClientDomainService:
    @staticmethod
    def determine_event_type(
        existing: KnownClient, new_details: ClientDetails, change: ChangeRef, rule: StatusRule
    ) -> list[ClientEvent]:
        """What a new state of a known client amounts to: nothing, a details change, and a status change when
        the derived status moved (checked against the business's transitions). A full record for a live client
        (a CREATE carrying later data, an UNDELETE of a live client) takes this path too, never a second
        registration."""
        differences = existing.details.diff(new_details)
        if not differences:
            return []
        return ClientDomainService._changed(existing, differences, rule.derive(new_details), change, rule)

    @staticmethod
    def determine_changes(
        existing: KnownClient, changes: Mapping[str, Any], change: ChangeRef, rule: StatusRule
    ) -> list[ClientEvent]:
        """`determine_event_type` of the details with ``changes`` (attribute path -> new value) applied, without
        building them: the same events (a property test holds the two equal)."""
        details = existing.details
        differences = details.changed_by(changes)
        if not differences:
            return []
        status = rule.status_of(changes.get("type", details.type), changes.get("active", details.active))
        return ClientDomainService._changed(existing, differences, status, change, rule)

    @staticmethod
    def _changed(existing: KnownClient, differences: Changes, status: ClientStatus, change: ChangeRef,
                 rule: StatusRule) -> list[ClientEvent]:
        events: list[ClientEvent] = [_new_details_changed(existing.client_id, differences, change)]
        if status != existing.status:
            ClientDomainService.validate_client_status(existing.status, status, rule)
            events.append(_new_status_changed(existing.client_id, existing.status, status, change))
        return events

    @staticmethod
    def validate_client_status(old: ClientStatus, new: ClientStatus, rule: StatusRule) -> None:
        if not rule.allowed(old, new):
            raise ForbiddenStatusTransition(old.value, new.value)


# The events of an update, made without their frozen __init__ (one or two for most messages ingested).
_new_details_changed = frozen_constructor(ClientDetailsChanged)
_new_status_changed = frozen_constructor(ClientStatusChanged)
