"""The parser on every supported format and change type, the real samples, bitmaps and fuzzed input."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.adapters.salesforce import bitmap
from worker.adapters.salesforce.change_event import ChangeType, FieldState
from worker.adapters.salesforce.encode import bitmap_of, encode_record
from worker.adapters.salesforce.errors import ChangeEventParseError, InvalidChangeEvent, UnknownSchema
from worker.adapters.salesforce.event_parser import parse
from worker.adapters.salesforce.ids import normalize_id
from worker.adapters.salesforce.schemas import SCHEMAS_DIR, SchemaResolver

SAMPLES = Path(__file__).resolve().parents[2] / "samples"  # two real CDC records, kept in the repository
SCHEMA_ID = "AccountChangeEvent-v1"
ACCOUNT = json.loads((SCHEMAS_DIR / "AccountChangeEvent.avsc").read_text())
RESOLVER = SchemaResolver()
ID = "001000000000001AAA"


def header(change_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "entityName": "Account", "recordIds": [ID], "changeType": change_type, "changeOrigin": "",
        "transactionKey": "tx-1", "sequenceNumber": 1, "commitTimestamp": 1_700_000_000_000,
        "commitNumber": 1_652_977_933_433_528_300, "commitUser": "005xx000001X8UzAAK",
        "nulledFields": [], "diffFields": [], "changedFields": [], **extra,
    }


def pubsub_record(change_type: str, body: dict[str, Any] | None = None, **head: Any) -> dict[str, Any]:
    record: dict[str, Any] = {f["name"]: None for f in ACCOUNT["fields"]}
    record["ChangeEventHeader"] = header(change_type, **head)
    record.update(body or {})
    return record


def avro(record: dict[str, Any]) -> bytes:
    return encode_record(ACCOUNT, record)


def test_the_guides_bitmap_example_decodes_to_industry_and_last_modified_date() -> None:
    layout = RESOLVER.get(SCHEMA_ID).layout
    assert bitmap.decode(["0x400800"], layout) == ["Industry", "LastModifiedDate"]
    assert bitmap.decode(["0x400000", "4-0x01"], layout) == ["LastModifiedDate", "BillingAddress.Street"]


def test_lower_case_hex_and_nested_only_bitmaps_decode() -> None:
    layout = RESOLVER.get(SCHEMA_ID).layout
    assert bitmap.decode(["0x400800".lower()], layout) == ["Industry", "LastModifiedDate"]
    assert bitmap.decode(["4-0x06"], layout) == ["BillingAddress.City", "BillingAddress.State"]


def test_a_bitmap_past_the_schema_is_a_typed_error() -> None:
    with pytest.raises(InvalidChangeEvent):
        bitmap.decode(["0x" + "F" * 20], RESOLVER.get(SCHEMA_ID).layout)


def test_bitmap_encoding_is_the_inverse_of_decoding() -> None:
    layout = RESOLVER.get(SCHEMA_ID).layout
    names = ["Phone", "LastModifiedDate", "BillingAddress.City"]
    assert bitmap.decode(bitmap_of(names, layout), layout) == ["Phone", "LastModifiedDate", "BillingAddress.City"]


def test_pubsub_avro_update_tells_set_from_nulled_from_unchanged_by_the_bitmaps() -> None:
    layout = RESOLVER.get(SCHEMA_ID).layout
    record = pubsub_record(
        "UPDATE",
        {"Phone": "+1 555", "LastModifiedDate": 1_700_000_000_000,
         "BillingAddress": {p: None for p in ("Street", "City", "State", "PostalCode", "Country", "StateCode",
                                              "CountryCode", "Latitude", "Longitude", "GeocodeAccuracy")}
         | {"City": "Lyon"}},
        changedFields=bitmap_of(["Phone", "Industry", "LastModifiedDate", "BillingAddress.City"], layout),
        nulledFields=bitmap_of(["Industry"], layout),
    )
    event = parse(avro(record), {"schema_id": SCHEMA_ID.encode()}, schemas=RESOLVER)
    assert event.format == "pubsub-avro" and event.change_type is ChangeType.UPDATE
    assert event.fields["Phone"].value == "+1 555" and event.fields["Phone"].state is FieldState.SET
    assert event.fields["Industry"].state is FieldState.NULLED
    assert event.fields["BillingAddress.City"].value == "Lyon"
    assert event.fields["Website"].state is FieldState.UNCHANGED
    assert event.commit_number == 1_652_977_933_433_528_300  # > 2**53, kept exact


def test_pubsub_avro_with_an_unknown_schema_id_is_a_typed_error() -> None:
    with pytest.raises(UnknownSchema):
        parse(avro(pubsub_record("CREATE")), {"schema_id": b"not-known"}, schemas=RESOLVER)


def test_pubsub_json_with_encoded_bitmaps_decodes_against_the_payload_key_order() -> None:
    record = pubsub_record("UPDATE", {"Industry": "Energy", "LastModifiedDate": 1}, changedFields=["0x400800"])
    event = parse(json.dumps({"payload": record}).encode(), None, schemas=RESOLVER)
    assert {k: v.value for k, v in event.changed().items()} == {"Industry": "Energy", "LastModifiedDate": 1}


def test_avro_json_union_wrappers_are_flattened() -> None:
    record = pubsub_record("CREATE", {"Name": {"string": "Acme"}, "AnnualRevenue": {"double": 10.5}})
    event = parse(json.dumps(record).encode(), None, schemas=RESOLVER)
    assert event.value("Name") == "Acme" and event.value("AnnualRevenue") == 10.5


def test_the_client_decoded_pubsub_sample_is_an_update_of_two_address_parts() -> None:
    event = parse((SAMPLES / "pubsub_client_decoded_account_update.json").read_bytes(), None, schemas=RESOLVER)
    assert event.format == "pubsub-json" and event.replay_id == "18098167"
    assert event.event_id == "9b77cea1-a923-4766-ad50-a1797d9b39fd"
    assert {k: v.value for k, v in event.changed().items()} == {
        "BillingAddress.City": "San Francisco", "BillingAddress.State": "CA", "LastModifiedDate": 1696444513000,
    }


def test_the_confluent_sample_is_a_create_whose_flattened_twins_are_ignored() -> None:
    event = parse((SAMPLES / "confluent_account_create_json_schemaless.json").read_bytes(), None, schemas=RESOLVER)
    assert event.format == "confluent-json" and event.change_type is ChangeType.CREATE
    assert event.replay_id == "4290851" and event.record_ids == ("0015500001NPDfcAAH",)
    assert event.value("BillingAddress.Street") == "1 Tesla Park Way"
    assert "BillingStreet" not in event.fields and event.value("ARR__c") == "0"


def test_a_confluent_record_inside_the_schema_payload_envelope_is_read() -> None:
    inner = {"ChangeEventHeader": header("DELETE"), "Id": ID, "ReplayId": "7", "_ObjectType": "AccountChangeEvent"}
    event = parse(json.dumps({"schema": {"type": "struct"}, "payload": inner}).encode(), None, schemas=RESOLVER)
    assert event.change_type is ChangeType.DELETE and event.replay_id == "7"


@pytest.mark.parametrize("wrapped", [True, False])
def test_cometd_absent_is_unchanged_and_explicit_null_is_nulled(wrapped: bool) -> None:
    payload = {"ChangeEventHeader": header("UPDATE", changedFields=["Phone", "Fax", "LastModifiedDate"]),
               "Phone": "+1", "Fax": None, "LastModifiedDate": "2024-04-09T20:26:27.000Z"}
    del payload["ChangeEventHeader"]["nulledFields"]
    data = {"schema": "abc", "payload": payload, "event": {"replayId": 42}}
    message = {"channel": "/data/AccountChangeEvent", "data": data} if wrapped else data
    event = parse(json.dumps(message).encode(), None, schemas=RESOLVER)
    assert event.format == "cometd" and event.replay_id == "42"
    assert event.fields["Phone"].value == "+1" and event.fields["Fax"].state is FieldState.NULLED
    assert "Website" not in event.fields and event.value("LastModifiedDate") == 1712694387000


def test_cometd_before_api_47_without_changed_fields_counts_every_present_field_as_set() -> None:
    payload = {"ChangeEventHeader": {k: v for k, v in header("UPDATE").items() if k != "changedFields"},
               "Phone": "+2"}
    event = parse(json.dumps({"data": {"payload": payload, "event": {"replayId": 1}}}).encode(), None,
                  schemas=RESOLVER)
    assert {k: v.value for k, v in event.changed().items()} == {"Phone": "+2"}


def test_gap_overflow_and_merged_events_keep_their_record_ids() -> None:
    merged = pubsub_record("GAP_UPDATE", recordIds=[ID, "001000000000002AAA"])
    assert parse(json.dumps(merged).encode(), None, schemas=RESOLVER).record_ids == (ID, "001000000000002AAA")
    overflow = pubsub_record("GAP_OVERFLOW", recordIds=["000000000000000AAA"])
    assert parse(json.dumps(overflow).encode(), None, schemas=RESOLVER).change_type is ChangeType.GAP_OVERFLOW
    wildcard = pubsub_record("UPDATE", recordIds=["001*"])
    assert parse(json.dumps(wildcard).encode(), None, schemas=RESOLVER).record_ids == ("001*",)


def test_fifteen_character_ids_are_normalized_to_eighteen() -> None:
    assert normalize_id("001xx000003DGb2") == "001xx000003DGb2AAG"
    record = pubsub_record("DELETE", recordIds=["001xx000003DGb2"])
    assert parse(json.dumps(record).encode(), None, schemas=RESOLVER).record_ids == ("001xx000003DGb2AAG",)


@pytest.mark.parametrize(
    ("value", "error"),
    [(b"", "empty"), (b"{not json", "not JSON"), (b"[1,2]", "JSON list"), (b'{"a": 1}', "none of"),
     (b"\x0e\x00binary", "schema_id"), (json.dumps({"ChangeEventHeader": header("EXPLODE")}).encode(), "changeType")],
)
def test_malformed_messages_raise_typed_errors_with_a_reason(value: bytes, error: str) -> None:
    with pytest.raises(ChangeEventParseError, match=error):
        parse(value, None, schemas=RESOLVER)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_only_typed_parse_errors(value: bytes) -> None:
    with contextlib.suppress(ChangeEventParseError):
        parse(value, {"schema_id": SCHEMA_ID.encode()}, schemas=RESOLVER)


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["ChangeEventHeader", "payload", "data", "schema"]))
def test_arbitrary_json_gives_only_typed_parse_errors(value: Any, key: str) -> None:
    for doc in (value, {key: value}, {"ChangeEventHeader": value, "Name": value}):
        with contextlib.suppress(ChangeEventParseError):
            parse(json.dumps(doc).encode(), None, schemas=RESOLVER)


def test_confluent_avro_with_schema_registry_framing_is_decoded_by_its_registry_id() -> None:
    resolver = SchemaResolver()
    resolver.add("registry:5", ACCOUNT)
    framed = b"\x00" + (5).to_bytes(4, "big") + avro(pubsub_record("CREATE", {"Name": "Acme"}))
    event = parse(framed, None, schemas=resolver)
    assert event.format == "confluent-avro" and event.value("Name") == "Acme"


def test_a_schema_registry_id_that_is_not_known_is_a_typed_error() -> None:
    with pytest.raises(UnknownSchema):
        parse(b"\x00\x00\x00\x00\x09rest", None, schemas=SchemaResolver())
