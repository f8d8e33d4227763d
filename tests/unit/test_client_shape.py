"""A client's shape is declared once, by the domain's `ClientDetails` and `Address`: the command data and the
Salesforce mapping follow it (the Avro schemas follow it too: test_client_event_contract.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.adapters.salesforce.mapping import _ADDRESS, DEFAULT_MAPPING
from worker.application.commands import AddressData, ClientData
from worker.application.handlers import to_details
from worker.domain import Address, ClientDetails
from worker.domain.codec import field_types
from worker.domain.values import ADDRESS_PARTS, PLAIN_ATTRIBUTES


def annotations(model: Any) -> dict[str, Any]:
    return {name: info.annotation for name, info in model.model_fields.items()}


def test_the_command_address_has_exactly_the_domain_address_fields_and_types() -> None:
    assert annotations(AddressData) == field_types(Address)


def test_the_command_client_data_has_exactly_the_domain_details_fields_and_types() -> None:
    expected = {**field_types(ClientDetails), "billing_address": AddressData, "extra": dict[str, Any]}
    assert field_types(ClientDetails)["extra"] == Mapping[str, Any]
    assert annotations(ClientData) == expected


def test_full_command_data_becomes_the_same_details() -> None:
    data = ClientData(name="Acme", employees=3, billing_address=AddressData(city="Paris", latitude=48.85),
                      extra={"Region__c": "EU"})
    assert to_details(data) == ClientDetails(name="Acme", employees=3, billing_address=Address(city="Paris",
                                             latitude=48.85), extra={"Region__c": "EU"})


def test_the_salesforce_mapping_feeds_every_address_part_and_every_plain_attribute() -> None:
    assert sorted(_ADDRESS.values()) == sorted(ADDRESS_PARTS)
    mapped = set(DEFAULT_MAPPING.values())
    assert {f"billing_address.{part}" for part in ADDRESS_PARTS} <= mapped
    assert set(PLAIN_ATTRIBUTES) <= mapped
