"""Events already in databases must still load, and new ones must be stored exactly as before: the payloads
in `stored_payloads.v1.json` are the shapes the hand-written `to_payload`s wrote (schema version 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.event_samples import CLIENT_ID, FULL, SPARSE
from worker.domain import ClientAggregate, ClientDetails, ClientResynchronized, ClientStatus, event_from_payload
from worker.domain.codec import MalformedPayload

FIXTURES = json.loads((Path(__file__).with_name("stored_payloads.v1.json")).read_text(encoding="utf-8"))
SAMPLES = {"full": FULL, "sparse": SPARSE}


def stored_text(payload: Any) -> str:
    """The event store writes payloads as compact JSON text (kept as sent in a `json` column)."""
    return json.dumps(payload, separators=(",", ":"))


def test_the_fixtures_cover_every_event_type_in_both_shapes() -> None:
    assert {(f["event_type"], f["sample"]) for f in FIXTURES} == {(t, s) for s in SAMPLES for t in FULL}


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f"{f['event_type']}-{f['sample']}")
def test_a_stored_payload_loads_as_the_same_event(fixture: dict[str, Any]) -> None:
    event = event_from_payload(fixture["event_type"], fixture["payload"], CLIENT_ID)
    assert event == SAMPLES[fixture["sample"]][fixture["event_type"]]
    assert event.schema_version == fixture["schema_version"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda f: f"{f['event_type']}-{f['sample']}")
def test_an_event_is_stored_byte_for_byte_as_before(fixture: dict[str, Any]) -> None:
    event = SAMPLES[fixture["sample"]][fixture["event_type"]]
    assert stored_text(event.to_payload()) == stored_text(fixture["payload"])


def test_keys_that_old_readers_tolerated_missing_still_default() -> None:
    payload = {"details": {"name": "Acme", "billing_address": None}, "status": "unknown", "deleted": False}
    event = event_from_payload("ClientResynchronized", payload, CLIENT_ID)
    assert event == ClientResynchronized(CLIENT_ID, ClientDetails(name="Acme"), ClientStatus.UNKNOWN, False, {}, None)


def test_a_change_stored_without_its_optional_positions_loads() -> None:
    change = {"record_id": CLIENT_ID, "transaction_key": "t", "sequence_number": 1, "commit_timestamp_ms": 5}
    event = event_from_payload("ClientDeleted", {"change": change}, CLIENT_ID)
    assert event.change_ref is not None and event.change_ref.commit_number is None


def test_a_payload_without_a_required_field_is_refused_by_name() -> None:
    with pytest.raises(MalformedPayload, match="'status'"):
        event_from_payload("ClientRegistered", {"details": {}, "change": None}, CLIENT_ID)


def test_a_snapshot_keeps_the_details_shape_of_the_stored_payloads() -> None:
    client = ClientAggregate.rehydrate(CLIENT_ID, [FULL["ClientRegistered"]])
    stored = next(f for f in FIXTURES if f["event_type"] == "ClientRegistered" and f["sample"] == "full")
    assert stored_text(client.snapshot()["details"]) == stored_text(stored["payload"]["details"])
    assert ClientAggregate.from_snapshot(json.loads(json.dumps(client.snapshot()))).details == client.details


def test_a_payload_with_a_value_of_the_wrong_shape_is_refused_by_field() -> None:
    with pytest.raises(MalformedPayload, match=r"ClientStatusChanged\.new_status"):
        event_from_payload("ClientStatusChanged", {"old_status": "active", "new_status": "churned"}, CLIENT_ID)
    with pytest.raises(MalformedPayload, match=r"ClientDetailsChanged\.changes: needs 2 items"):
        event_from_payload("ClientDetailsChanged", {"changes": {"phone": [1, 2, 3]}, "change": None}, CLIENT_ID)
