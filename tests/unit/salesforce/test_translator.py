"""The translator: one command per record id, Salesforce's names mapped to the client's, policies for other
entities, echoes, gaps, overflow and wildcard ids."""

from __future__ import annotations

import json
from typing import Any

from tests.cdc_factory import CdcFactory
from worker.adapters.salesforce.event_parser import parse
from worker.adapters.salesforce.mapping import FieldMapping
from worker.adapters.salesforce.schemas import SchemaResolver
from worker.adapters.salesforce.translator import KafkaCoordinates, TranslationResult, translate
from worker.application.commands import (
    ChangeClientDetails,
    DeleteClient,
    MarkClientForResync,
    RegisterClient,
    RestoreClient,
    ResyncAllClients,
    ResyncClients,
)

A, B, C = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"
WHERE = KafkaCoordinates("salesforce.cdc.account", 2, 41, traceparent="00-abc-def-01")


def run(message: tuple[bytes, bytes], own: str | None = None, mapping: FieldMapping | None = None) -> TranslationResult:
    event = parse(message[1], None, schemas=SchemaResolver())
    return translate(event, WHERE, mapping=mapping or FieldMapping.from_overrides(), own_client_id=own)


def edit(message: tuple[bytes, bytes], **header: Any) -> tuple[bytes, bytes]:
    doc = json.loads(message[1])
    doc["payload"]["ChangeEventHeader"].update(header)
    return message[0], json.dumps(doc).encode()


def test_a_create_registers_with_mapped_attributes_and_the_rest_in_extra() -> None:
    f = CdcFactory()
    result = run(f.create(A, Industry="Energy", BillingAddress={"City": "Paris"}, NumberOfEmployees=12.0,
                          Custom__c="x"))
    (cmd,) = result.commands
    assert isinstance(cmd, RegisterClient)
    assert cmd.data.industry == "Energy" and cmd.data.billing_address.city == "Paris"
    assert cmd.data.employees == 12 and cmd.data.extra == {"Custom__c": "x"}
    assert cmd.change.causation_id == "salesforce.cdc.account:2:41" and cmd.change.traceparent == "00-abc-def-01"
    assert cmd.change.correlation_id == cmd.change.transaction_key


def test_an_update_carries_only_set_and_nulled_attributes() -> None:
    result = run(CdcFactory().update(A, nulled=("Industry",), Phone="+1"))
    (cmd,) = result.commands
    assert isinstance(cmd, ChangeClientDetails) and cmd.changes == {"phone": "+1", "industry": None}


def test_a_merged_update_fans_out_one_command_per_record_id() -> None:
    result = run(CdcFactory().update([A, B, C], Rating="Hot"))
    assert [c.client_id for c in result.commands] == [A, B, C]  # type: ignore[attr-defined]
    assert all(c.changes == {"rating": "Hot"} for c in result.commands)  # type: ignore[attr-defined]


def test_delete_and_undelete() -> None:
    f = CdcFactory()
    assert isinstance(run(f.delete(A)).commands[0], DeleteClient)
    restore = run(f.undelete(A)).commands[0]
    assert isinstance(restore, RestoreClient) and restore.data.name


def test_a_gap_marks_each_client_and_asks_one_resync_for_all() -> None:
    kinds = [type(c) for c in run(CdcFactory().gap([A, B])).commands]
    assert kinds == [MarkClientForResync, MarkClientForResync, ResyncClients]


def test_overflow_and_wildcard_ids_ask_for_a_full_resync() -> None:
    f = CdcFactory()
    assert [type(c) for c in run(f.overflow()).commands] == [ResyncAllClients]
    assert [type(c) for c in run(edit(f.update(A, Phone="1"), recordIds=["001*"])).commands] == [ResyncAllClients]


def test_our_own_writes_are_echoes_and_are_skipped() -> None:
    message = edit(CdcFactory().update(A, Phone="1"), changeOrigin="com/salesforce/api/rest/62.0;client=cdc-worker")
    result = run(message, own="cdc-worker")
    assert result.commands == [] and result.skipped == "echo"
    assert run(message, own="someone-else").commands


def test_other_entities_are_skipped_by_policy() -> None:
    for entity in ("Contact", "Lead", "Opportunity"):
        result = run(edit(CdcFactory().create(A), entityName=entity))
        assert result.commands == [] and result.skipped == f"entity {entity}"
    assert run(edit(CdcFactory().create(A), entityName="AccountChangeEvent")).commands


def test_a_person_account_name_record_becomes_the_name_and_keeps_its_parts() -> None:
    name = {"Salutation": "Ms.", "FirstName": "Ada", "LastName": "Lovelace", "MiddleName": None}
    (cmd,) = run(CdcFactory().create(A, Name=name)).commands
    assert isinstance(cmd, RegisterClient)
    assert cmd.data.name == "Ms. Ada Lovelace" and cmd.data.extra["PersonName"]["FirstName"] == "Ada"


def test_the_mapping_is_configurable() -> None:
    mapping = FieldMapping.from_overrides({"Region__c": "industry"})
    (cmd,) = run(CdcFactory().update(A, Region__c="EMEA"), mapping=mapping).commands
    assert cmd.changes == {"industry": "EMEA"}  # type: ignore[attr-defined]


def test_a_rest_record_maps_flat_billing_fields_for_resyncs() -> None:
    data = FieldMapping.from_overrides().record_to_client_data(
        {"attributes": {}, "Id": A, "Name": "Acme", "BillingCity": "Paris", "LastModifiedDate": "x", "Sic": "1"}
    )
    assert data.name == "Acme" and data.billing_address.city == "Paris" and data.extra == {"Sic": "1"}


def test_a_header_text_a_store_would_refuse_is_refused_when_translated_with_its_field_and_clients_named() -> None:
    """The change metadata's texts are checked as the model is built: a NUL (jsonb has none) or a text longer than
    Salesforce's longest refuses the change at stage validate, naming the field, and holds its clients back."""
    import pytest

    from worker.application.commands import MAX_TEXT
    from worker.application.validation import InvalidChangeValues

    f = CdcFactory()
    for header, problem in [({"changeOrigin": "com/salesforce/api/rest/60.0\x00"}, "change_origin: contains a NUL"),
                            ({"transactionKey": "a\x00b"}, "transaction_key: contains a NUL character"),
                            ({"commitUser": "u" * (MAX_TEXT + 1)}, "commit_user: String should have at most")]:
        with pytest.raises(InvalidChangeValues) as refused:
            run(edit(f.update(A, Phone="+1"), **header))
        assert problem in str(refused.value) and refused.value.client_ids == (A,)
