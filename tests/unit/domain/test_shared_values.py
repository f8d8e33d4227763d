"""What keeps an aggregate small in memory without changing a thing it decides: repeated values shared by all
clients, and positions kept as one int each."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.domain import ChangeRef, ClientAggregate, ClientDetails, StatusRule
from worker.domain import values as values_module
from worker.domain.model import _later, _later_code, position_code, position_of
from worker.domain.packing import pack, unpack
from worker.domain.values import REPEATED_ATTRIBUTES, SHARED_LENGTH, is_shared, shared

ID = "001000000000001AAA"


def fresh(text: str) -> str:
    """An equal string, another object (as each decoded message makes)."""
    return "".join(list(text))


def test_equal_strings_become_the_one_kept_for_all() -> None:
    first, second = fresh("Customer - Channel"), fresh("Customer - Channel")
    assert first is not second
    assert shared(first) is shared(second) and is_shared(shared(second))
    assert not is_shared(fresh("Customer - Channel"))  # equal, but not the one kept


@pytest.mark.parametrize("value", [None, 7, 1.5, True, b"bytes"])
def test_a_value_that_is_not_a_str_is_given_back_as_it_is(value: Any) -> None:
    assert shared(value) is value and not is_shared(value)


def test_a_str_subclass_is_not_shared() -> None:
    class Text(str):
        pass

    value = Text("Hot")
    assert shared(value) is value and type(shared(value)) is Text


def test_a_long_value_is_kept_as_it_is() -> None:
    long = fresh("x" * (SHARED_LENGTH + 1))
    assert shared(long) is long and not is_shared(long)


def test_past_its_bound_the_table_keeps_values_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values_module, "_SHARED", {})
    monkeypatch.setattr(values_module, "SHARED_MAX", 2)
    a, b, c = shared(fresh("a1")), shared(fresh("b1")), fresh("c1")
    assert shared(c) is c and not is_shared(c)  # full: equal values pass through
    assert shared(fresh("a1")) is a and shared(fresh("b1")) is b  # those kept still are


def test_details_with_shared_values_are_equal_and_share_the_repeated_attributes() -> None:
    details = ClientDetails(name=fresh("Acme 1"), type=fresh("Customer - Direct"), rating=fresh("Hot"),
                            owner_id=fresh("005000000000001AAA")).with_changes(
        {"billing_address.city": fresh("Paris"), "billing_address.street": fresh("1 rue de la Paix")})
    compact = details.with_shared_values()
    assert compact == details
    assert is_shared(compact.type) and is_shared(compact.rating) and is_shared(compact.owner_id)
    assert is_shared(compact.billing_address.city)
    assert not is_shared(compact.name) and not is_shared(compact.billing_address.street)  # not repeated attributes
    assert compact.with_shared_values() is compact  # nothing left to share: no copy


def test_the_repeated_attributes_name_attributes_of_a_client() -> None:
    details = ClientDetails()
    for path in REPEATED_ATTRIBUTES:
        details.get(path)  # raises UnknownAttribute for a path no client has


def test_an_unpacked_aggregate_holds_the_shared_strings_again() -> None:
    """marshal writes an interned string as such and interns it as it reads it: the shared one comes back."""
    client = ClientAggregate.new(ID)
    ref = ChangeRef(ID, str(uuid.UUID(int=1)), 1, 1_750_000_000_000, 5)
    details = ClientDetails(name="Acme", type=shared(fresh("Customer - Direct")), industry=fresh("Energy"))
    for event in client.register(details.with_changes({"billing_address.country": shared(fresh("FR"))}), ref,
                                 StatusRule()):
        client.apply(event)
    data = pack(client)
    assert data is not None
    copy = unpack(ID, data)
    assert copy.details == client.details
    assert copy.details.type is client.details.type
    assert copy.details.billing_address.country is client.details.billing_address.country
    assert not is_shared(copy.details.industry) and copy.details.industry == "Energy"  # not shared: a copy


def test_share_repeated_values_changes_no_state_a_decision_or_snapshot_sees() -> None:
    client = ClientAggregate.new(ID)
    ref = ChangeRef(ID, str(uuid.UUID(int=1)), 1, 1_750_000_000_000, 5)
    for event in client.register(ClientDetails(name="Acme", rating=fresh("Warm")), ref, StatusRule()):
        client.apply(event)
    before, version = client.snapshot(), client.version
    client.share_repeated_values()
    assert client.snapshot() == before and client.version == version and is_shared(client.details.rating)


timestamps = st.integers(-(2**45), 2**45)
numbers = st.one_of(st.none(), st.integers(-(2**70), 2**70), st.sampled_from([0, 2**64 - 2, 2**64 - 1, 2**64]))
positions = st.tuples(timestamps, numbers)


@given(positions)
def test_a_position_code_gives_the_position_back(position: tuple[int, int | None]) -> None:
    back = position_of(position_code(position))
    assert back == position and type(back[1]) is type(position[1])


@given(positions, positions)
def test_position_codes_order_as_the_positions_do(a: tuple[int, int | None], b: tuple[int, int | None]) -> None:
    assert _later_code(position_code(a), position_code(b)) is _later(a, b)


@given(timestamps, st.one_of(st.none(), st.integers(0, 2**64 - 2)))
def test_a_position_a_64_bit_number_holds_is_one_int(ts: int, number: int | None) -> None:
    assert type(position_code((ts, number))) is int
