"""Which Salesforce field feeds which client attribute: configurable, with defaults for the standard Account
fields. Unmapped fields go to the client's `extra` bag by their Salesforce name, never an error; system fields
go nowhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    "PhotoUrl", "MasterRecordId", "IsPersonAccount",
})
_ADDRESS_PREFIXES = ("Billing", "Shipping", "PersonMailing", "PersonOther", "Mailing", "Other")
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
        plain: dict[str, Any] = {}
        address: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for field, value in values.items():
            for path, item in self.values(field, value).items():
                head, dot, rest = path.partition(".")
                if not dot:
                    plain[path] = item
                elif head == "billing_address":
                    address[rest] = item
                elif head == "extra":
                    extra[rest] = item
                # any other dotted path names no part of a client: dropped
        return ClientData(**plain, billing_address=AddressData(**address), extra=extra)

    def rest_fields(self, person_names: bool = False) -> list[str]:
        """The flat REST field names the mapping reads (`BillingCity` for `BillingAddress.City`), Name first;
        with ``person_names`` the person-account name parts too."""
        names = ["Name", *(_flat(field) for field in self._map if field != "Name")]
        if person_names:
            names += PERSON_NAME_PARTS
        return list(dict.fromkeys(names))

    def covered_attributes(self, rest_fields: Iterable[str]) -> frozenset[str]:
        """The client attribute paths a read of these flat REST fields covers (name parts: `extra.PersonName`)."""
        covered = set()
        for name in rest_fields:
            if name in PERSON_NAME_PARTS:
                covered.add("extra.PersonName")
                continue
            attribute = self.attribute(_compound(name))
            if attribute is not None:
                covered.add(attribute)
        return frozenset(covered)

    def record_to_client_data(self, record: Mapping[str, Any]) -> ClientData:
        """A Salesforce REST record (flat `BillingStreet`, … fields) as client data, for resyncs."""
        values: dict[str, Any] = {}
        for field, value in record.items():
            if isinstance(value, dict) and field.endswith("Address"):
                continue  # compound read-only twin of flat fields (ShippingAddress): kept via the flat ones
            values[_compound(field)] = value
        return self.client_data(values)


def _flat(field: str) -> str:
    """`BillingAddress.City` -> `BillingCity` (the REST and SOQL name of a compound part); others unchanged."""
    compound, _, part = field.partition(".")
    if part and compound.endswith("Address"):
        return compound[: -len("Address")] + part
    return part if compound == "Name" and part else field


def _compound(field: str) -> str:
    """`BillingCity` -> `BillingAddress.City` (any address compound: Shipping, PersonMailing...); others unchanged."""
    for prefix in _ADDRESS_PREFIXES:
        if field.startswith(prefix) and field[len(prefix):] in _ADDRESS:
            return f"{prefix}Address.{field[len(prefix):]}"
    return field
