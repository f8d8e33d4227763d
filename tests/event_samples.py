"""One sample of each domain event type, every optional field populated, plus the sparse shapes (nulls,
defaults) that stored events also take: shared by the payload-fixture and Avro-contract tests."""

from __future__ import annotations

from worker.domain import (
    Address,
    ChangeRef,
    ClientDeleted,
    ClientDetails,
    ClientDetailsChanged,
    ClientEvent,
    ClientMarkedForResync,
    ClientRegistered,
    ClientRestored,
    ClientResynchronized,
    ClientStatus,
    ClientStatusChanged,
)

CLIENT_ID = "001000000000001AAA"
CHANGE = ChangeRef(CLIENT_ID, "0002c5d1-aaaa", 3, 1_700_000_000_000, commit_number=11_000_000_000,
                   last_modified_ms=1_699_999_999_000)
SPARSE_CHANGE = ChangeRef(CLIENT_ID, "0002c5d1-bbbb", 0, 1_700_000_001_000)
DETAILS = ClientDetails(
    name="Acme", type="Customer - Direct", industry="Energy", phone="+1 555 0100", website="acme.example",
    billing_address=Address("1 Main St", "Springfield", "Illinois", "62701", "United States", "IL", "US",
                            39.78, -89.65, "Address"),
    owner_id="005000000000001AAA", annual_revenue=1_250_000.5, employees=120, rating="Hot",
    account_source="Web", parent_id="001000000000009AAA", active="Yes",
    extra={"Region__c": "EU", "Score__c": 4.5, "Tags__c": ["a", "b"], "PersonName": {"FirstName": "Ada"},
           "Vip__c": True, "Note__c": None},
)
CHANGES = {"phone": (None, "+1 555 0100"), "billing_address.city": ("Shelbyville", "Springfield"),
           "employees": (100, 120), "extra.Score__c": (4, 4.5)}

FULL: dict[str, ClientEvent] = {
    "ClientRegistered": ClientRegistered(CLIENT_ID, DETAILS, ClientStatus.ACTIVE, CHANGE),
    "ClientDetailsChanged": ClientDetailsChanged(CLIENT_ID, CHANGES, CHANGE),
    "ClientStatusChanged": ClientStatusChanged(CLIENT_ID, ClientStatus.ACTIVE, ClientStatus.INACTIVE, CHANGE),
    "ClientDeleted": ClientDeleted(CLIENT_ID, CHANGE),
    "ClientRestored": ClientRestored(CLIENT_ID, DETAILS, ClientStatus.ACTIVE, CHANGE),
    "ClientMarkedForResync": ClientMarkedForResync(CLIENT_ID, "gap event GAP_UPDATE", CHANGE),
    "ClientResynchronized": ClientResynchronized(CLIENT_ID, DETAILS, ClientStatus.ACTIVE, False, CHANGES,
                                                 1_700_000_002_000),
}

SPARSE: dict[str, ClientEvent] = {
    "ClientRegistered": ClientRegistered(CLIENT_ID, ClientDetails(), ClientStatus.UNKNOWN, SPARSE_CHANGE),
    "ClientDetailsChanged": ClientDetailsChanged(CLIENT_ID, {}, None),
    "ClientStatusChanged": ClientStatusChanged(CLIENT_ID, ClientStatus.PROSPECT, ClientStatus.ACTIVE, None),
    "ClientDeleted": ClientDeleted(CLIENT_ID, None),
    "ClientRestored": ClientRestored(CLIENT_ID, ClientDetails(name="Acme"), ClientStatus.UNKNOWN, None),
    "ClientMarkedForResync": ClientMarkedForResync(CLIENT_ID, "dead-lettered change", None),
    "ClientResynchronized": ClientResynchronized(CLIENT_ID, None, ClientStatus.UNKNOWN, True),
}
