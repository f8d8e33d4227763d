"""The packed form of an aggregate (what the aggregate cache keeps): an unpacked aggregate is the same aggregate, in
every attribute, in its snapshot to the byte, and in every later decision."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.domain import (
    ChangeRef,
    ClientAggregate,
    ClientDetails,
    ClientStatus,
    ForbiddenStatusTransition,
    StatusRule,
    TextDiff,
)
from worker.domain.model import RECENT_CHANGES
from worker.domain.packing import pack, unpack
from worker.domain.values import ADDRESS_PARTS, PLAIN_ATTRIBUTES

ID = "001000000000001AAA"
OTHER = "001000000000002AAA"
RULE = StatusRule()
RULE_VALUES = ["Yes", "No", "Prospect", "Customer - Direct"]

texts = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(RULE_VALUES))  # unicode of every plane
floats = st.one_of(st.none(), st.floats(allow_nan=False), st.sampled_from([-0.0, float("inf"), float("nan")]))
integers = st.one_of(st.none(), st.integers(-(2**31), 2**31), st.integers(2**63, 2**200))  # beyond 64 bits
scalars = st.one_of(texts, floats, integers, st.booleans())  # what a custom field may hold
NUMBERS = {"annual_revenue": floats, "employees": integers, "billing_address.latitude": floats,
           "billing_address.longitude": floats}
EXTRA = ["extra.Description", "extra.X__c", "extra.Ünïcödé__c", "extra.Flag__c"]
PATHS = [*PLAIN_ATTRIBUTES, *(f"billing_address.{part}" for part in ADDRESS_PARTS), *EXTRA]


def values_of(path: str) -> st.SearchStrategy[Any]:
    return scalars if path.startswith("extra.") else NUMBERS.get(path, texts)


change_data = st.dictionaries(st.sampled_from(PATHS), st.none(), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({path: values_of(path) for path in keys}))
transaction_keys = st.one_of(
    st.uuids().map(str),  # canonical: remembered as a number
    st.uuids().map(lambda u: str(u).upper()),  # not canonical: remembered as text
    st.text(min_size=1, max_size=20),
)
kinds = st.sampled_from(["create", "update", "update", "update", "diff", "delete", "undelete", "gap", "resync",
                         "partial resync", "replay"])


@st.composite
def change_refs(draw: Any, ts: int, n: int) -> ChangeRef:
    return ChangeRef(
        record_id=draw(st.sampled_from([ID, ID, ID, OTHER])),  # another record: a merge
        transaction_key=draw(transaction_keys),
        sequence_number=draw(st.sampled_from([1, 1, 1, 2, 7])),
        commit_timestamp_ms=ts,
        commit_number=draw(st.one_of(st.none(), st.just(10_000 + n), st.integers(2**40, 2**70))),
        last_modified_ms=draw(st.one_of(st.none(), st.just(ts))),
    )


@st.composite
def histories(draw: Any, max_changes: int = 40) -> list[tuple[str, ChangeRef, Any]]:
    """What a client may have gone through: registrations, updates (plain, diffs), deletes, gaps, resyncs."""
    changes: list[tuple[str, ChangeRef, Any]] = []
    ts = 1_750_000_000_000
    for n in range(draw(st.integers(0, max_changes))):
        ts += draw(st.sampled_from([0, 1000, 1000, 3_600_000, -1000]))  # same second, later, late-arriving
        kind = draw(kinds)
        if kind == "replay" and changes:
            changes.append(draw(st.sampled_from(changes)))
            continue
        data = draw(change_data)
        changes.append((kind, draw(change_refs(ts, n)), data))
    return changes


def feed(client: ClientAggregate, change: tuple[str, ChangeRef, Any]) -> list[Any]:
    kind, ref, data = change
    try:
        if kind in ("create", "undelete", "resync", "partial resync", "replay"):
            details = ClientDetails(name="Acme", active="Yes").with_changes(data)
            if kind in ("create", "replay"):
                events = client.register(details, ref, RULE)
            elif kind == "undelete":
                events = client.restore(details, ref, RULE)
            else:
                fetched = set(data) if kind == "partial resync" else None
                events = client.resynchronize(details, ref.last_modified_ms, False, RULE, fetched)
        elif kind == "update":
            events = client.change_details(data, ref, RULE)
        elif kind == "diff":
            events = client.change_details({}, ref, RULE, {"extra.Description": TextDiff(_patch(client, data))})
        elif kind == "delete":
            events = client.delete(ref)
        else:
            events = client.mark_for_resync("gap ✂", ref)
    except ForbiddenStatusTransition:
        return []
    for event in events:
        client.apply(event)
    return list(events)


def _patch(client: ClientAggregate, data: dict[str, Any]) -> str:
    """A diff that applies to the stored description when there is one and ``data`` asks for it (else a broken one)."""
    old = client.details.get("extra.Description")
    if not isinstance(old, str) or not data:
        return "--- \n+++ 00\n@@ -1 +1 @@\n-nothing\n+else"
    new = old + "\r\nmore ✓"
    lines = old.split("\r\n")
    hunk = f"@@ -{len(lines)} +{len(lines)},2 @@\n {lines[-1]}\n+more ✓"
    return f"--- \n+++ {hashlib.sha256(new.encode()).hexdigest()}\n{hunk}"


def state(client: ClientAggregate) -> dict[str, str]:
    """Every attribute, by its repr: tells -0.0 from 0.0, 1 from 1.0 and True, a tuple from a list, dict order."""
    return {name: repr(getattr(client, name)) for name in ClientAggregate.__slots__}


def assert_same(client: ClientAggregate, copy: ClientAggregate) -> None:
    assert copy is not client and copy.details is not client.details
    assert state(copy) == state(client)
    assert json.dumps(copy.snapshot()) == json.dumps(client.snapshot())


def round_trip(client: ClientAggregate) -> ClientAggregate:
    data = pack(client)
    assert isinstance(data, bytes)
    return unpack("".join(client.client_id), data)  # an equal id, another string (as the cache's key)


@settings(max_examples=100, deadline=None)
@given(histories(), histories(max_changes=15), st.data())
def test_an_unpacked_aggregate_is_the_aggregate_and_decides_the_same(history: Any, later: Any, data: Any) -> None:
    client = ClientAggregate.new(ID)
    for change in history:
        feed(client, change)
    copy = round_trip(client)
    assert_same(client, copy)
    # what follows (new changes and redeliveries of earlier ones) is decided alike: dedup, staleness, positions
    redelivered = data.draw(st.lists(st.sampled_from(history), max_size=5)) if history else []
    for change in [*redelivered, *later]:
        assert repr(feed(copy, change)) == repr(feed(client, change))
    assert_same(client, copy)


identities = st.tuples(transaction_keys, st.integers(1, 2**70), st.sampled_from([ID, OTHER, "x"]))
positions = st.tuples(st.integers(0, 2**45), st.one_of(st.none(), st.integers(-(2**70), 2**70)))


@st.composite
def snapshots(draw: Any) -> dict[str, Any]:
    """Any state a snapshot may carry, drawn directly (values no decision path reaches, older snapshots)."""
    address = {part: values_of(f"billing_address.{part}") for part in ADDRESS_PARTS}
    details = draw(st.fixed_dictionaries(
        {name: values_of(name) for name in PLAIN_ATTRIBUTES},
        optional={"billing_address": st.fixed_dictionaries({}, optional=address),
                  "extra": st.dictionaries(st.text(min_size=1, max_size=12), scalars, max_size=5)},
    ))
    return {
        "client_id": ID,
        "version": draw(st.integers(0, 2**40)),
        "registered": draw(st.booleans()),
        "details": details,
        "status": draw(st.sampled_from([s.value for s in ClientStatus])),
        "deleted": draw(st.booleans()),
        "needs_resync": draw(st.booleans()),
        "resync_reason": draw(st.one_of(st.none(), st.text(max_size=30))),
        "last_commit_ts_ms": draw(st.one_of(st.none(), st.integers(0, 2**45))),
        "last_commit_number": draw(st.one_of(st.none(), st.integers(-(2**70), 2**70))),
        "resynced_as_of_ms": draw(st.one_of(st.none(), st.integers(0, 2**45))),
        "recent_changes": draw(st.lists(identities, max_size=RECENT_CHANGES, unique=True)),
        "fields_as_of": draw(st.one_of(st.none(), positions)),
        "field_positions": draw(st.dictionaries(st.sampled_from(PATHS) | st.text(max_size=30), positions, max_size=14)),
    }


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_any_snapshot_state_packs_and_unpacks_exactly(snapshot: dict[str, Any]) -> None:
    client = ClientAggregate.from_snapshot(json.loads(json.dumps(snapshot)))
    assert_same(client, round_trip(client))


def _with(**changes: Any) -> ClientAggregate:
    client = ClientAggregate.new(ID)
    feed(client, ("create", ChangeRef(ID, str(uuid.UUID(int=1)), 1, 1_750_000_000_000, 5), {}))
    client.details = client.details.with_changes(changes)
    return client


def _remembering(count: int) -> ClientAggregate:
    client = ClientAggregate.new(ID)
    for n in range(count):
        ref = ChangeRef(ID, str(uuid.UUID(int=n * 7919)), 1, 1000 * n, n)
        feed(client, ("update" if n else "create", ref, {"phone": str(n)}))
    return client


@pytest.mark.parametrize("client", [
    pytest.param(ClientAggregate.new(ID), id="never registered"),
    pytest.param(_with(**{"extra.Big__c": 2**200, "extra.Neg__c": -(2**70), "employees": 2**64}), id="big ints"),
    pytest.param(_with(annual_revenue=-0.0, **{"billing_address.latitude": float("nan")}), id="-0.0 and nan"),
    pytest.param(_with(name="Société ✓ 東京 \U0001f600", **{"extra.Ñame__c": "\x00\t"}), id="unicode, nul"),
    pytest.param(_with(name=None, phone=None, **{"extra.Gone__c": None}), id="nulls"),
    pytest.param(_with(**{"extra.Flag__c": True, "extra.Count__c": 1, "extra.Rate__c": 1.0}), id="bool/int/float"),
    pytest.param(_remembering(RECENT_CHANGES + 5), id="a full memory of change identities"),
])
def test_edge_values_pack_and_unpack_exactly(client: ClientAggregate) -> None:
    assert_same(client, round_trip(client))


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, bytearray(b"x"), ClientStatus.ACTIVE, (1,)])
def test_an_aggregate_holding_a_value_with_no_exact_packed_form_is_not_packed(value: Any) -> None:
    assert pack(_with(**{"extra.Odd__c": value})) is None


def test_a_str_subclass_in_an_attribute_is_not_packed_as_a_plain_str() -> None:
    assert pack(_with(name=ClientStatus.ACTIVE)) is None


def test_paths_changed_at_one_position_share_it_again_once_unpacked() -> None:
    """A full record sent as a change sets every path at one position, one tuple for all (`apply`); unpacked as
    separate tuples and ints they took ~800 bytes more per aggregate, in a cache that keeps tens of thousands."""
    client = _with()
    ref = ChangeRef(ID, str(uuid.UUID(int=2)), 1, 1_750_000_001_000, 6)
    feed(client, ("update", ref, {"phone": "1", "website": "w", "billing_address.city": "c", "extra.X__c": "x"}))
    feed(client, ("update", ChangeRef(ID, str(uuid.UUID(int=3)), 1, 1_750_000_002_000, 7), {"rating": "Hot"}))
    copy = round_trip(client)
    assert copy.field_positions == client.field_positions
    distinct = {id(code) for code in copy._field_positions.values()}  # the memory is the point
    assert len(distinct) == len(set(client.field_positions.values())) == 2
    positions = copy.field_positions  # read back as tuples, still one per distinct position
    assert len({id(position) for position in positions.values()}) == 2
