"""Migration 007's stored form of a batch's metadata: what `compact_metadata` splits, `full_metadata` gives back
whole, whatever the batch's events carry (values equal but of another type, missing keys, changes that repeat a
metadata field)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.adapters.postgres.compact import compact_metadata, full_metadata
from worker.application.ports import StoredEvent

STREAM = "001000000000000AAA"
KEYS = ("worker_version", "command", "transaction_key", "sequence_number", "commit_timestamp", "correlation_id",
        "causation_id", "source_topic", "source_partition", "source_offset", "replay_id", "traceparent")
# values that are equal across types (1, 1.0, True) or look alike, so sharing must compare types too
VALUES = st.one_of(st.none(), st.booleans(), st.sampled_from([0, 1, 2, 1.0, 2.5, "1", "t", "a:0:1", "", "x"]),
                   st.lists(st.integers(0, 2), max_size=2), st.dictionaries(st.sampled_from("ab"), st.integers(0, 1)))
METAS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=len(KEYS))
CHANGES = st.one_of(st.none(), st.fixed_dictionaries({
    "record_id": st.just(STREAM), "transaction_key": st.sampled_from(["t", "1"]),
    "sequence_number": st.sampled_from([1, 2, True]), "commit_timestamp_ms": st.sampled_from([0, 1, 1.0]),
    "commit_number": st.none(), "last_modified_ms": st.none()}))


def _event(version: int, event_type: str, meta: dict[str, Any], change: dict[str, Any] | None) -> StoredEvent:
    payload: dict[str, Any] = {"client_id": STREAM} if change is None else {"client_id": STREAM, "change": change}
    return StoredEvent(STREAM, version, event_type, 1, payload, {"event_id": f"id-{version}", **meta})


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), METAS, CHANGES), min_size=1, max_size=8),
       st.sampled_from([{}, {"worker_version": "v1", "source_topic": "t"}]))
def test_every_events_metadata_is_given_back_whole(items: list[Any], common: dict[str, Any]) -> None:
    events = [_event(n + 1, kind, {**common, **meta}, change) for n, (kind, meta, change) in enumerate(items)]
    shared, rows = compact_metadata(events)
    for event, own in zip(events, rows, strict=True):
        back = full_metadata(shared, own, event.metadata["event_id"], event.event_type, event.payload)
        assert back == event.metadata
        assert all(type(back[k]) is type(v) for k, v in event.metadata.items())


def test_what_every_event_shares_is_stored_once_and_equal_values_of_another_type_are_not_shared() -> None:
    metas = [{"worker_version": "v1", "source_offset": 1, "replay_id": "9"},
             {"worker_version": "v1", "source_offset": 1.0, "replay_id": "9"},
             {"worker_version": "v1", "source_offset": True}]
    shared, rows = compact_metadata([_event(n + 1, "A", m, None) for n, m in enumerate(metas)])
    assert shared == {"worker_version": "v1"}
    assert rows == [{"source_offset": 1, "replay_id": "9"}, {"source_offset": 1.0, "replay_id": "9"},
                    {"source_offset": True}]


def test_fields_shared_by_the_events_of_one_type_are_stored_once_for_that_type() -> None:
    events = [_event(1, "A", {"command": "X", "source_offset": 1}, None),
              _event(2, "A", {"command": "X", "source_offset": 2}, None),
              _event(3, "B", {"command": "Y", "source_offset": 3}, None)]
    shared, rows = compact_metadata(events)
    assert shared == {"~types": {"A": {"command": "X"}, "B": {"command": "Y", "source_offset": 3}}}
    assert rows == [{"source_offset": 1}, {"source_offset": 2}, {}]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), METAS, CHANGES,
                          st.text(alphabet=st.sampled_from(['a', 'é', '"', '\\', '\n', '\u2028', '😀']), max_size=6)),
                min_size=1, max_size=8))
def test_the_events_parameter_is_the_text_of_one_json_array_of_the_rows(items: list[Any]) -> None:
    """The store encodes a batch's events one at a time and joins the texts: the same text as the array in one
    call, in the events' order (what `json_to_recordset` reads)."""
    import json

    from worker.adapters.postgres.compact import compact_payload
    from worker.adapters.postgres.event_store import _events_params

    events = []
    for version, (event_type, meta, change, text) in enumerate(items, start=1):
        event = _event(version, event_type, meta, change)
        events.append(StoredEvent(event.stream_id, version, event_type, 1, {**event.payload, "note": text},
                                  event.metadata))
    shared, own = compact_metadata(events)
    rows = [{"s": e.stream_id, "v": e.version, "i": e.metadata["event_id"], "t": e.event_type, "w": e.schema_version,
             "p": compact_payload(e.stream_id, e.payload), "m": meta} for e, meta in zip(events, own, strict=True)]
    as_one_call = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)

    shared_text, events_text = _events_params(events)

    assert events_text == as_one_call
    assert shared_text == json.dumps(shared, separators=(",", ":"), ensure_ascii=False)
    assert [row["v"] for row in json.loads(events_text)] == list(range(1, len(events) + 1))
