"""`frozen_constructor` builds the same frozen value as the dataclass's own ``__init__``, without running it."""

from __future__ import annotations

import dataclasses

import pytest

from worker.domain.values import Address, ChangeRef, ClientDetails, frozen_constructor, new_change_ref


def test_a_change_ref_made_positionally_equals_the_dataclass_one_and_stays_frozen() -> None:
    made = new_change_ref("001000000000001AAA", "tk-1", 2, 1_750_000_000_000, 10, None)
    assert made == ChangeRef(record_id="001000000000001AAA", transaction_key="tk-1", sequence_number=2,
                             commit_timestamp_ms=1_750_000_000_000, commit_number=10, last_modified_ms=None)
    assert hash(made) == hash(ChangeRef("001000000000001AAA", "tk-1", 2, 1_750_000_000_000, 10))
    assert made.identity == ("tk-1", 2, "001000000000001AAA")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.sequence_number = 3  # type: ignore[misc]


@pytest.mark.parametrize("cls", [ChangeRef, ClientDetails, Address])
def test_every_field_is_set_in_declaration_order(cls: type) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    values = [f"v{i}" for i in range(len(names))]
    made = frozen_constructor(cls)(*values)
    assert type(made) is cls
    assert [getattr(made, name) for name in names] == values
    assert made == cls(*values)
