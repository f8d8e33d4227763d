"""The event store's JSON text is exactly `json.dumps(value, separators=(",", ":"), ensure_ascii=False)`, the
encoder only built once: same text for any JSON value, NaN and Infinity written for PostgreSQL to refuse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.adapters.postgres.event_store import _json

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
                    st.floats(allow_nan=True, allow_infinity=True), st.text())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=20)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=500, deadline=None)
@given(values)
def test_the_store_writes_the_text_json_dumps_writes(value: Any) -> None:
    assert _json(value) == dumps(value)


def test_edges_are_written_as_json_dumps_writes_them_and_other_objects_refused() -> None:
    for value in ({"a": float("nan"), "b": -float("inf")}, [2**70, -0.0, 1e16, 1e-7], "\u00e9\n\t\"\\\u2028",
                  {"x": (1, 2)}, 5, None):
        assert _json(value) == dumps(value)
    assert _json({"a": float("nan")}) == '{"a":NaN}'  # PostgreSQL refuses it: bisected and dead-lettered
    with pytest.raises(TypeError, match="not JSON serializable"):
        _json({"a": object()})
