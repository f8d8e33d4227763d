"""Given events / when a decision / then events: one test per rule of the client aggregate."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from worker.domain import (
    ChangeRef,
    ClientAggregate,
    ClientDeleted,
    ClientDetails,
    ClientDetailsChanged,
    ClientMarkedForResync,
    ClientRegistered,
    ClientRestored,
    ClientResynchronized,
    ClientStatus,
    ClientStatusChanged,
    ForbiddenStatusTransition,
    StatusRule,
    TextDiff,
    UnknownAttribute,
    event_from_payload,
)

ID = "001000000000001AAA"
RULE = StatusRule()
ACME = ClientDetails(name="Acme", type="Customer - Direct", active="Yes", extra={"Region__c": "EU"})


def ref(tx: str, ts: int, seq: int = 1, last_modified: int | None = None) -> ChangeRef:
    return ChangeRef(ID, tx, seq, ts, last_modified_ms=last_modified)


def given(*events: Any) -> ClientAggregate:
    return ClientAggregate.rehydrate(ID, events)


def registered(ts: int = 1000) -> ClientAggregate:
    return given(ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref("t0", ts)))


def decide(client: ClientAggregate, events: list[Any]) -> list[Any]:
    for event in events:
        client.apply(event)
    return events


def test_a_create_registers_the_client_with_its_derived_status() -> None:
    events = ClientAggregate.new(ID).register(ACME, ref("t1", 1000), RULE)
    assert events == [ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref("t1", 1000))]


def test_a_change_already_applied_yields_no_events() -> None:
    client = registered()
    change = ref("t1", 2000)
    assert decide(client, client.change_details({"phone": "1"}, change, RULE))
    assert client.change_details({"phone": "1"}, change, RULE) == []


def test_a_change_in_the_same_second_from_another_transaction_is_applied() -> None:
    client = registered(ts=2000)
    events = client.change_details({"phone": "2"}, ref("t-other", 2000), RULE)
    assert events == [ClientDetailsChanged(ID, {"phone": (None, "2")}, ref("t-other", 2000))]


def test_a_change_older_than_the_last_applied_one_is_a_replay_and_yields_nothing() -> None:
    client = registered(ts=5000)
    assert client.change_details({"phone": "3"}, ref("t-old", 4000), RULE) == []


def test_within_one_second_the_commit_number_orders_changes() -> None:
    client = given(ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ChangeRef(ID, "t0", 1, 2000, commit_number=50)))
    assert client.change_details({"phone": "1"}, ChangeRef(ID, "t-earlier", 1, 2000, commit_number=40), RULE) == []
    assert client.change_details({"phone": "1"}, ChangeRef(ID, "t-later", 1, 2000, commit_number=60), RULE)


def test_a_change_that_alters_nothing_yields_nothing() -> None:
    assert registered().change_details({"name": "Acme"}, ref("t1", 2000), RULE) == []


def test_an_update_for_an_unknown_client_asks_for_a_resync_and_invents_nothing() -> None:
    client = ClientAggregate.new(ID)
    events = decide(client, client.change_details({"phone": "1"}, ref("t1", 1000), RULE))
    assert [type(e) for e in events] == [ClientMarkedForResync]
    assert not client.registered and client.needs_resync
    assert client.change_details({"phone": "2"}, ref("t2", 2000), RULE) == []


def test_a_gap_marks_the_client_dirty_and_later_changes_are_held_back() -> None:
    client = registered()
    assert [type(e) for e in decide(client, client.mark_for_resync("gap", ref("g", 2000)))] == [
        ClientMarkedForResync
    ]
    assert client.mark_for_resync("gap again", ref("g2", 2500)) == []
    assert client.change_details({"phone": "9"}, ref("t3", 3000), RULE) == []


def test_a_resync_applies_the_full_record_and_clears_the_flag() -> None:
    client = given(
        ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref("t0", 1000)),
        ClientMarkedForResync(ID, "gap", ref("g", 2000)),
    )
    fetched = ClientDetails(name="Acme Corp", type="Customer - Direct", active="No")
    events = decide(client, client.resynchronize(fetched, 3000, False, RULE))
    assert isinstance(events[0], ClientResynchronized)
    assert events[0].differences["name"] == ("Acme", "Acme Corp") and events[0].status is ClientStatus.INACTIVE
    assert not client.needs_resync and client.details == fetched
    assert client.change_details({"phone": "1"}, ref("t-before", 3500, last_modified=2900), RULE) == []
    assert client.change_details({"phone": "1"}, ref("t-after", 4000, last_modified=4000), RULE)


def test_a_resync_of_a_dirty_client_with_nothing_different_still_clears_the_flag() -> None:
    client = given(ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref("t0", 1000)),
                   ClientMarkedForResync(ID, "gap", None))
    events = decide(client, client.resynchronize(ACME, 2000, False, RULE))
    assert len(events) == 1 and not client.needs_resync
    assert client.resynchronize(ACME, 2000, False, RULE) == []


def test_a_resync_that_finds_the_record_gone_marks_it_deleted() -> None:
    client = given(ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref("t0", 1000)),
                   ClientMarkedForResync(ID, "gap", None))
    decide(client, client.resynchronize(None, None, True, RULE))
    assert client.deleted and not client.needs_resync and client.details == ACME


def test_a_resync_replaces_the_fields_it_fetched_and_keeps_the_others() -> None:
    client = given(ClientRegistered(ID, ACME.with_changes({"extra.PersonName": {"FirstName": "Ada"}}),
                                    ClientStatus.ACTIVE, ref("t0", 1000)),
                   ClientMarkedForResync(ID, "gap", ref("g", 2000)))
    fetched = ClientDetails(name="Acme", phone="42")  # read: name and phone only
    events = decide(client, client.resynchronize(fetched, 3000, False, RULE, fetched={"name", "phone"}))
    assert isinstance(events[0], ClientResynchronized) and events[0].differences == {"phone": (None, "42")}
    assert client.status is ClientStatus.ACTIVE and client.details.active == "Yes"
    assert client.details.extra == {"Region__c": "EU", "PersonName": {"FirstName": "Ada"}}


def test_a_resync_where_salesforce_agrees_changes_nothing_and_where_it_differs_changes_it() -> None:
    client = given(ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref("t0", 1000)))
    everything = {"name", "type", "active", "extra.Region__c"}
    assert client.resynchronize(ACME, 2000, False, RULE, fetched=everything) == []
    moved = ACME.with_changes({"active": "No", "extra.Region__c": "US"})
    events = decide(client, client.resynchronize(moved, 2000, False, RULE, fetched=everything))
    assert events[0].differences == {"active": ("Yes", "No"), "extra.Region__c": ("EU", "US")}
    assert client.status is ClientStatus.INACTIVE


def test_a_record_read_before_the_last_applied_change_is_refused() -> None:
    client = given(ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref("t0", 1000)),
                   ClientMarkedForResync(ID, "gap", ref("g", 2000)),
                   ClientResynchronized(ID, ACME, ClientStatus.ACTIVE, False, {}, 2000))
    decide(client, client.change_details({"phone": "new"}, ref("c", 5000), RULE))
    assert client.fetched_before_last_change(4000) and not client.fetched_before_last_change(5999)
    assert client.resynchronize(ACME.with_changes({"phone": "old"}), 4000, False, RULE, fetched={"phone"}) == []
    assert client.details.phone == "new"


def test_delete_then_undelete_restores_the_full_record() -> None:
    client = registered()
    assert decide(client, client.delete(ref("d", 2000))) == [ClientDeleted(ID, ref("d", 2000))]
    assert client.delete(ref("d2", 2500)) == []
    assert client.change_details({"phone": "1"}, ref("u", 2600), RULE) == []
    restored = ClientDetails(name="Acme", active="Yes", phone="5")
    events = client.restore(restored, ref("r", 3000), RULE)
    assert events == [ClientRestored(ID, restored, ClientStatus.ACTIVE, ref("r", 3000))]


def test_an_undelete_of_a_client_never_seen_registers_it_from_the_full_record() -> None:
    client = ClientAggregate.new(ID)
    decide(client, client.restore(ACME, ref("r", 1000), RULE))
    assert client.registered and not client.deleted


def test_a_create_for_a_known_client_becomes_a_details_change() -> None:
    events = registered().register(ACME.with_changes({"phone": "7"}), ref("t9", 9000), RULE)
    assert events == [ClientDetailsChanged(ID, {"phone": (None, "7")}, ref("t9", 9000))]


def test_a_status_change_follows_the_details_change() -> None:
    events = registered().change_details({"active": "No"}, ref("t1", 2000), RULE)
    assert [type(e) for e in events] == [ClientDetailsChanged, ClientStatusChanged]
    assert events[1].new_status is ClientStatus.INACTIVE


def test_a_customer_never_becomes_a_prospect_again() -> None:
    with pytest.raises(ForbiddenStatusTransition):
        registered().change_details({"type": "Prospect"}, ref("t1", 2000), RULE)


def test_the_status_rule_is_configurable() -> None:
    rule = StatusRule(prospect_types=("Lead",), active_values=("true",), inactive_values=("false",))
    assert rule.derive(ClientDetails(type="Lead - Warm")) is ClientStatus.PROSPECT
    assert rule.derive(ClientDetails(active="true")) is ClientStatus.ACTIVE
    assert rule.derive(ClientDetails(active="Yes")) is ClientStatus.UNKNOWN


def test_an_unknown_attribute_is_refused() -> None:
    with pytest.raises(UnknownAttribute):
        registered().change_details({"favourite_colour": "blue"}, ref("t1", 2000), RULE)


def test_address_components_and_extra_fields_change_one_by_one() -> None:
    events = registered().change_details(
        {"billing_address.city": "Lyon", "extra.Region__c": None}, ref("t1", 2000), RULE
    )
    assert events[0].changes == {"billing_address.city": (None, "Lyon"), "extra.Region__c": ("EU", None)}


def _diff(old: str, new: str) -> str:
    import difflib

    body = difflib.unified_diff(old.split("\r\n"), new.split("\r\n"), lineterm="", n=1)
    lines = list(body)[2:]
    return "--- \n+++ " + hashlib.sha256(new.encode()).hexdigest() + "\n" + "\n".join(lines)


def test_a_long_text_diff_is_applied_to_the_stored_value_and_verified() -> None:
    old = "\r\n".join(f"line {n}" for n in range(40))
    new = old.replace("line 20", "line twenty")
    client = given(ClientRegistered(ID, ACME.with_changes({"extra.Description": old}), ClientStatus.ACTIVE,
                                    ref("t0", 1000)))
    events = client.change_details({}, ref("t1", 2000), RULE, {"extra.Description": TextDiff(_diff(old, new))})
    assert events[0].changes["extra.Description"] == (old, new)


def test_a_diff_that_does_not_match_the_stored_value_asks_for_a_resync() -> None:
    old = "\r\n".join(f"line {n}" for n in range(40))
    client = given(ClientRegistered(ID, ACME.with_changes({"extra.Description": old + "x"}), ClientStatus.ACTIVE,
                                    ref("t0", 1000)))
    patch = _diff(old, old.replace("line 3", "line three"))
    events = client.change_details({}, ref("t1", 2000), RULE, {"extra.Description": TextDiff(patch)})
    assert [type(e) for e in events] == [ClientMarkedForResync]


def test_a_diff_without_a_stored_value_asks_for_a_resync() -> None:
    events = registered().change_details({}, ref("t1", 2000), RULE, {"extra.Notes__c": TextDiff("--- \n+++ ab\n")})
    assert [type(e) for e in events] == [ClientMarkedForResync]


def test_a_snapshot_round_trips_the_whole_state() -> None:
    client = registered()
    decide(client, client.change_details({"phone": "1"}, ref("t1", 2000), RULE))
    decide(client, client.mark_for_resync("gap", ref("g", 3000)))
    assert ClientAggregate.from_snapshot(client.snapshot()).snapshot() == client.snapshot()


@pytest.mark.parametrize(
    "event",
    [
        ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref("t", 1)),
        ClientDetailsChanged(ID, {"phone": (None, "1"), "billing_address.city": ("a", "b")}, ref("t", 1)),
        ClientStatusChanged(ID, ClientStatus.ACTIVE, ClientStatus.INACTIVE, ref("t", 1)),
        ClientDeleted(ID, ref("t", 1)),
        ClientRestored(ID, ACME, ClientStatus.ACTIVE, None),
        ClientMarkedForResync(ID, "gap", None),
        ClientResynchronized(ID, None, ClientStatus.UNKNOWN, True, {}, None),
        ClientResynchronized(ID, ACME, ClientStatus.ACTIVE, False, {"name": ("a", "Acme")}, 5),
    ],
)
def test_every_event_round_trips_through_its_payload(event: Any) -> None:
    import json

    payload = json.loads(json.dumps(event.to_payload()))
    assert event_from_payload(event.event_type, payload, ID) == event


UUID_TX = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
# identities the aggregate remembers in a compact form: each must come back (snapshot) and dedupe exactly as given
IDENTITIES = [
    (UUID_TX, 1, ID),  # the common case: a canonical key, the first change of the transaction, this record
    (UUID_TX, 2, ID),  # the same transaction's next change
    (UUID_TX, 1, "001000000000002AAA"),  # a merge: another record of the same transaction
    (UUID_TX.upper(), 1, ID),  # not canonical (upper case): a different key, kept as text
    ("0a1b_c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", 1, ID),  # int() would read this one; it is no UUID text
    ("t-1", 7, ID),
]


def test_remembered_change_identities_dedupe_exactly_and_round_trip_byte_for_byte() -> None:
    import json

    client = registered(ts=500)
    for ts, (tx, seq, record) in enumerate(IDENTITIES, start=1000):
        change = ChangeRef(record, tx, seq, ts)
        assert not client.holds_back(change) and not client._is_duplicate(change)
        decide(client, client.change_details({"phone": str(ts)}, change, RULE))
    remembered = [["t0", 1, ID], *[list(identity) for identity in IDENTITIES]]
    assert client.snapshot()["recent_changes"] == remembered
    for tx, seq, record in IDENTITIES:
        assert client._is_duplicate(ChangeRef(record, tx, seq, 9999))
    others = [(UUID_TX, 3, ID), (UUID_TX.replace("a", "b", 1), 1, ID), (UUID_TX, 2, "001000000000002AAA")]
    for tx, seq, record in others:
        assert not client._is_duplicate(ChangeRef(record, tx, seq, 9999))
    restored = ClientAggregate.from_snapshot(json.loads(json.dumps(client.snapshot())))
    assert json.dumps(restored.snapshot()) == json.dumps(client.snapshot())
    assert restored._is_duplicate(ChangeRef(ID, UUID_TX, 1, 9999))


def test_only_the_last_recent_changes_are_remembered() -> None:
    from worker.domain.model import RECENT_CHANGES

    client = registered(ts=500)
    keys = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(RECENT_CHANGES + 2)]
    for ts, tx in enumerate(keys, start=1000):
        decide(client, client.change_details({"phone": str(ts)}, ChangeRef(ID, tx, 1, ts), RULE))
    assert [t for t, _, _ in client.recent_changes] == keys[-RECENT_CHANGES:]


def _uuid_text(number: int) -> str:
    h = f"{number:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def test_canonical_keys_are_remembered_as_bytes_and_only_whole_entries_match() -> None:
    """While every remembered key is a canonical UUID, they are kept as one bytes object (16 bytes each); a key
    whose bytes straddle two remembered ones (the second half of one, the first half of the next) is not one of
    them."""
    client = given(ClientRegistered(ID, ACME, ClientStatus.ACTIVE, ref(_uuid_text(7), 500)))
    first, second = (1 << 64) * 0x1111 + 0x2222, (1 << 64) * 0x3333 + 0x4444
    for ts, key in ((1000, first), (1001, second)):
        decide(client, client.change_details({"phone": str(ts)}, ChangeRef(ID, _uuid_text(key), 1, ts), RULE))
    assert type(client._recent) is bytes
    straddling = ((first & (2**64 - 1)) << 64) | (second >> 64)
    assert client._recent.find(straddling.to_bytes(16, "big")) == 24  # (after the registration's key)
    assert not client._is_duplicate(ChangeRef(ID, _uuid_text(straddling), 1, 9999))
    assert client._is_duplicate(ChangeRef(ID, _uuid_text(second), 1, 9999))


def test_a_key_of_another_form_keeps_the_order_and_the_window_of_the_remembered_ones() -> None:
    from worker.domain.model import RECENT_CHANGES

    client = registered(ts=500)
    keys = [_uuid_text(n * 7919 + 1) for n in range(RECENT_CHANGES)]
    keys[10] = "not-a-uuid"
    keys[20] = keys[20].upper()  # not canonical: kept as its text
    for ts, tx in enumerate(keys, start=1000):
        decide(client, client.change_details({"phone": str(ts)}, ChangeRef(ID, tx, 1, ts), RULE))
    decide(client, client.change_details({"phone": "x"}, ChangeRef(ID, "tx-seq", 2, 5000), RULE))
    assert type(client._recent) is tuple
    assert [t for t, _, _ in client.recent_changes] == [*keys[1:], "tx-seq"]
    assert all(client._is_duplicate(ChangeRef(ID, tx, 1, 9999)) for tx in keys[1:])
    assert not client._is_duplicate(ChangeRef(ID, keys[0], 1, 9999))
