"""Which Salesforce field feeds which client attribute: configurable, with defaults for the standard Account
fields. Unmapped fields go to the client's `extra` bag by their Salesforce name, never an error; system fields
go nowhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.application.commands import AddressData, ClientData

_ADDRESS = {
    "Street": "street", "City": "city", "State": "state", "PostalCode": "postal_code", "Country": "country",
    "StateCode": "state_code", "CountryCode": "country_code", "Latitude": "latitude", "Longitude": "longitude",
    "GeocodeAccuracy": "geocode_accuracy",
}
DEFAULT_MAPPING: dict[str, str] = {
    "Name": "name",
    "Type": "type",
    "Industry": "industry",
    "Phone": "phone",
    "Website": "website",
    "OwnerId": "owner_id",
    "AnnualRevenue": "annual_revenue",
    "NumberOfEmployees": "employees",
    "Rating": "rating",
    "AccountSource": "account_source",
    "ParentId": "parent_id",
    "Active__c": "active",
    **{f"BillingAddress.{sf}": f"billing_address.{ours}" for sf, ours in _ADDRESS.items()},
}
SYSTEM_FIELDS = frozenset({
    "Id", "IsDeleted", "ReplayId", "_ObjectType", "_EventType", "attributes", "LastModifiedDate", "LastModifiedById",
    "CreatedDate", "CreatedById", "SystemModstamp", "LastViewedDate", "LastReferencedDate", "LastActivityDate",
    "PhotoUrl",
})
PERSON_NAME_PARTS = ("Salutation", "FirstName", "MiddleName", "LastName", "Suffix")


class FieldMapping:
    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._map = dict(mapping)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, str] | None = None) -> FieldMapping:
        return cls({**DEFAULT_MAPPING, **(overrides or {})})

    def attribute(self, field: str) -> str | None:
        """The client attribute path for a Salesforce field (or compound part); None for system fields."""
        if field in SYSTEM_FIELDS:
            return None
        if field in self._map:
            return self._map[field]
        if field.startswith("Name."):  # a person-account name part
            return f"extra.PersonName.{field[5:]}"
        return f"extra.{field}"

    def values(self, field: str, value: Any) -> dict[str, Any]:
        """Attribute path -> value for one Salesforce field (a person name record gives the name and its parts)."""
        attribute = self.attribute(field)
        if attribute is None:
            return {}
        if field == "Name" and isinstance(value, dict):
            parts = {k: v for k, v in value.items() if v is not None}
            full = " ".join(str(parts[p]) for p in PERSON_NAME_PARTS if parts.get(p))
            return {attribute: full or None, "extra.PersonName": parts}
        if attribute == "employees" and isinstance(value, float) and value.is_integer():
            value = int(value)
        return {attribute: value}

    def client_data(self, values: Mapping[str, Any]) -> ClientData:
        """A full record from field -> value (compound parts as `BillingAddress.City`)."""
        flat: dict[str, Any] = {}
        for field, value in values.items():
            flat.update(self.values(field, value))
        address = {path.split(".", 1)[1]: v for path, v in flat.items() if path.startswith("billing_address.")}
        extra = {path.split(".", 1)[1]: v for path, v in flat.items() if path.startswith("extra.")}
        plain = {k: v for k, v in flat.items() if "." not in k}
        return ClientData(**plain, billing_address=AddressData(**address), extra=extra)

    def record_to_client_data(self, record: Mapping[str, Any]) -> ClientData:
        """A Salesforce REST record (flat `BillingStreet`, … fields) as client data, for resyncs."""
        values: dict[str, Any] = {}
        for field, value in record.items():
            if field.startswith("Billing") and field[len("Billing"):] in _ADDRESS:
                values[f"BillingAddress.{field[len('Billing'):]}"] = value
            elif isinstance(value, dict) and field.endswith("Address"):
                continue  # compound read-only twin of flat fields (ShippingAddress): kept via the flat ones
            else:
                values[field] = value
        return self.client_data(values)
