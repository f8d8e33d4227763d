"""The mapping names the flat REST fields it reads and the attribute paths a read of them covers."""

from __future__ import annotations

from worker.adapters.salesforce.mapping import FieldMapping


def test_compound_parts_are_read_by_their_flat_rest_names_and_name_comes_first() -> None:
    fields = FieldMapping.from_overrides({"ShippingAddress.City": "extra.ShippingCity"}).rest_fields()
    assert fields[0] == "Name" and {"BillingCity", "BillingLatitude", "Active__c", "ShippingCity"} <= set(fields)
    assert not any("." in name for name in fields) and "FirstName" not in fields


def test_person_name_parts_are_read_only_when_the_org_has_them_and_cover_person_name() -> None:
    mapping = FieldMapping.from_overrides()
    fields = mapping.rest_fields(person_names=True)
    assert {"FirstName", "LastName", "Salutation", "MiddleName", "Suffix"} <= set(fields)
    covered = mapping.covered_attributes([*fields, "Region__c", "Id", "SystemModstamp"])
    assert {"name", "billing_address.city", "active", "extra.PersonName", "extra.Region__c"} <= covered
    assert not any(path.startswith("extra.FirstName") or path in ("Id", "extra.Id") for path in covered)


def test_a_mapped_shipping_part_read_flat_lands_on_its_mapped_attribute() -> None:
    mapping = FieldMapping.from_overrides({"ShippingAddress.City": "extra.DeliveryCity"})
    assert "extra.DeliveryCity" in mapping.covered_attributes(["ShippingCity"])
    data = mapping.record_to_client_data({"Name": "Acme", "ShippingCity": "Lyon", "BillingCity": "Paris"})
    assert data.extra == {"DeliveryCity": "Lyon"} and data.billing_address.city == "Paris"
