"""The mapping names the flat REST fields it reads and the attribute paths a read of them covers."""

from __future__ import annotations

import pytest

from worker.adapters.salesforce import mapping as mapping_module
from worker.adapters.salesforce.mapping import FieldMapping
from worker.domain.values import is_shared


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


def test_a_mapping_target_that_names_no_client_attribute_is_refused_when_the_mapping_is_made() -> None:
    for target in ("extra", "billing_address", "billing_address.planet", "shipping.city", "nickname", "extra."):
        with pytest.raises(ValueError, match="name no client attribute"):
            FieldMapping.from_overrides({"Region__c": target})
    assert FieldMapping.from_overrides({"Region__c": "billing_address.country"}).attribute("Region__c") == (
        "billing_address.country")


@pytest.mark.parametrize(("field", "value"), [
    ("Phone", "555"), ("Phone", None), ("NumberOfEmployees", 12.0), ("NumberOfEmployees", 12.5),
    ("Name", "Acme"), ("Name", {"FirstName": "Ada", "LastName": "Lovelace", "Salutation": None}),
    ("BillingAddress.City", "Paris"), ("Region__c", 3), ("Name.FirstName", "Ada"), ("SystemModstamp", 1),
    ("LastModifiedDate", 1), ("Id", "001"),
])
def test_add_puts_what_values_gives_whether_the_route_is_learnt_or_remembered(field: str, value: object) -> None:
    mapping = FieldMapping.from_overrides()
    for _ in range(2):  # the first call learns the field's route, the second uses it
        into: dict[str, object] = {"kept": 1}
        mapping.add(into, field, value)
        assert into == {"kept": 1, **mapping.values(field, value)}


def test_routes_remembered_are_bounded_and_fields_past_the_bound_still_translate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping_module, "_ROUTES_KEPT", 3)
    mapping = FieldMapping.from_overrides()
    names = [f"Custom{i}__c" for i in range(10)]
    data = mapping.client_data({**{name: i for i, name in enumerate(names)}, "Phone": "1", "Id": "x"})
    assert data.extra == {name: i for i, name in enumerate(names)} and data.phone == "1"
    assert len(mapping._routes) == 3
    into: dict[str, object] = {}
    mapping.add(into, names[-1], "v")
    assert into == {f"extra.{names[-1]}": "v"}


def test_each_field_kind_has_its_own_route() -> None:
    """Routes are told apart by identity: equal tuples in one module can be one object."""
    mapping = FieldMapping.from_overrides()
    assert mapping_module._SYSTEM is not mapping_module._SPECIAL
    assert mapping._route("SystemModstamp") is mapping_module._SYSTEM
    assert mapping._route("Name") is mapping_module._SPECIAL and mapping._route("NumberOfEmployees") is (
        mapping_module._SPECIAL)
    assert mapping._route("BillingAddress.City") == ("billing_address.city", 1, "city", True)  # a repeated value
    assert mapping._route("BillingAddress.Street") == ("billing_address.street", 1, "street", False)
    assert mapping._route("Region__c") == ("extra.Region__c", 2, "Region__c", False)


def test_a_repeated_attribute_gets_the_one_string_kept_for_all_clients() -> None:
    """Picklist values (and owners, places) repeat across clients: an aggregate kept in memory holds the string
    shared by all, not the copy its message decoded (~0.5 KB of ~3 KB a client)."""
    mapping = FieldMapping.from_overrides()

    def decoded(text: str) -> str:
        return "".join(list(text))  # an equal string, another object, as each message's decoding makes

    first = mapping.client_data({"Name": decoded("Acme 1"), "Industry": decoded("Energy"),
                                 "BillingAddress.City": decoded("Lyon")})
    second = mapping.client_data({"Name": decoded("Acme 2"), "Industry": decoded("Energy"),
                                  "BillingAddress.City": decoded("Lyon")})
    assert first.industry is second.industry and is_shared(first.industry)
    assert first.billing_address.city is second.billing_address.city
    assert not is_shared(first.name)
    changes: dict[str, object] = {}
    mapping.add(changes, "Industry", decoded("Energy"))
    mapping.add(changes, "Phone", decoded("+1 555"))
    assert changes["industry"] is first.industry and not is_shared(changes["phone"])
