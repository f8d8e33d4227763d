"""The Account describe of the fake org: standard fields with their types, custom fields, person-account fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STANDARD_FIELDS: dict[str, str] = {
    "Id": "id", "IsDeleted": "boolean", "MasterRecordId": "reference", "Name": "string", "Type": "picklist",
    "ParentId": "reference", "BillingStreet": "textarea", "BillingCity": "string", "BillingState": "string",
    "BillingPostalCode": "string", "BillingCountry": "string", "BillingStateCode": "picklist",
    "BillingCountryCode": "picklist", "BillingLatitude": "double", "BillingLongitude": "double",
    "BillingGeocodeAccuracy": "picklist", "BillingAddress": "address", "Phone": "phone", "Website": "url",
    "Industry": "picklist", "AnnualRevenue": "currency", "NumberOfEmployees": "int", "Description": "textarea",
    "Rating": "picklist", "OwnerId": "reference", "AccountSource": "picklist", "CreatedDate": "datetime",
    "CreatedById": "reference", "LastModifiedDate": "datetime", "LastModifiedById": "reference",
    "SystemModstamp": "datetime",
}
PERSON_FIELDS: dict[str, str] = {
    "FirstName": "string", "LastName": "string", "Salutation": "picklist", "MiddleName": "string",
    "Suffix": "string", "IsPersonAccount": "boolean", "PersonEmail": "email", "PersonContactId": "reference",
}
COMPOUND = frozenset({"BillingAddress"})
_NOT_UPDATEABLE = frozenset({
    "Id", "IsDeleted", "MasterRecordId", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
    "SystemModstamp", "IsPersonAccount", "PersonContactId", "BillingAddress",
})


class AccountDescribe:
    """Field name -> type of the org's Account; SOQL names are case-insensitive, so lookups are too."""

    def __init__(self, custom_fields: Mapping[str, str] | None = None, person_accounts: bool = False) -> None:
        self.types: dict[str, str] = dict(STANDARD_FIELDS)
        if person_accounts:
            self.types.update(PERSON_FIELDS)
        self._by_lower = {n.lower(): n for n in self.types}
        for name, kind in (custom_fields or {}).items():
            self.declare(name, kind)

    def declare(self, name: str, kind: str = "string") -> None:
        if not name.endswith("__c"):
            raise ValueError(f"a custom field's API name ends in __c: {name!r}")
        self.types[name] = kind
        self._by_lower[name.lower()] = name

    def canonical(self, name: str) -> str | None:
        return self._by_lower.get(name.lower())

    def as_json(self) -> dict[str, Any]:
        return {
            "name": "Account", "label": "Account", "keyPrefix": "001", "custom": False, "queryable": True,
            "updateable": True, "createable": True, "deletable": True, "retrieveable": True,
            "urls": {"describe": "/services/data/v62.0/sobjects/Account/describe"},
            "fields": [
                {"name": name, "type": kind, "label": name, "custom": name.endswith("__c"),
                 "nillable": name not in ("Id", "IsDeleted", "Name", "CreatedDate", "SystemModstamp"),
                 "updateable": name not in _NOT_UPDATEABLE, "length": 255 if kind in ("string", "textarea") else 0,
                 "compoundFieldName": "BillingAddress" if name.startswith("Billing") and name != "BillingAddress"
                 else None}
                for name, kind in self.types.items()
            ],
        }
