"""Which Salesforce field feeds which client attribute: configurable, with defaults for the standard Account
fields. Unmapped fields go to the client's `extra` bag by their Salesforce name, never an error; system fields
go nowhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from worker.application.commands import AddressData, ClientData, is_client_attribute
from worker.domain.values import REPEATED_ATTRIBUTES, shared

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
# Field names whose route `add` keeps: a schema has a few hundred; JSON input can name anything, so past this
# many a name is routed again each time rather than remembered.
_ROUTES_KEPT = 4096
# A field's route (`FieldMapping._route`): its attribute path, the part of a full record holding it (0 the plain
# attributes, 1 the billing address, 2 extra; -1 none), its key there and whether its values repeat across clients
# (a picklist: the value is the domain's `shared` string, one for all the clients kept in memory); or one of these
# two, told by identity:
_Route = tuple[str, int, str, bool]
_SPECIAL: _Route = ("", -1, "special", False)  # only `values` knows (a person name record, an employee count)
_SYSTEM: _Route = ("", -1, "system", False)  # a system field: nowhere
_ADDRESS_PREFIXES = ("Billing", "Shipping", "PersonMailing", "PersonOther", "Mailing", "Other")
PERSON_NAME_PARTS = ("Salutation", "FirstName", "MiddleName", "LastName", "Suffix")


def mapping_problem(mapping: Mapping[str, str]) -> str | None:
    """What is wrong with field mapping overrides (Salesforce field -> client attribute), or None."""
    wrong = {field: target for field, target in mapping.items() if not is_client_attribute(target)}
    if not wrong:
        return None
    return (f"field mapping targets that name no client attribute: {wrong} (a plain attribute,"
            f" billing_address.<{'|'.join(AddressData.model_fields)}> or extra.<name>)")


class FieldMapping:
    def __init__(self, mapping: Mapping[str, str]) -> None:
        problem = mapping_problem(mapping)
        if problem:
            raise ValueError(problem)
        self._map = dict(mapping)
        self._routes: dict[str, _Route] = {}  # learnt as fields are met

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

    def add(self, into: dict[str, Any], field: str, value: Any) -> None:
        """``into.update(self.values(field, value))``: for all but a few fields, one lookup of the field's route
        and one item set (translating an update does this for every field it changes)."""
        route = self._routes.get(field) or self._route(field)
        if route is _SPECIAL:
            into.update(self.values(field, value))
        elif route is not _SYSTEM:
            into[route[0]] = shared(value) if route[3] else value

    def client_data(self, values: Mapping[str, Any]) -> ClientData:
        """A full record from field -> value (compound parts as `BillingAddress.City`)."""
        plain: dict[str, Any] = {}
        address: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        parts = (plain, address, extra)
        routes = self._routes
        for field, value in values.items():
            route = routes.get(field) or self._route(field)
            if route is _SPECIAL:
                for path, item in self.values(field, value).items():
                    _, part, key, _ = _placed(path)
                    if part >= 0:
                        parts[part][key] = item
            elif route[1] >= 0:  # not _SYSTEM, nor a path that names no part of a client
                parts[route[1]][route[2]] = shared(value) if route[3] else value
        # one validation of the whole record (the address is validated as part of it): a model's constructor
        # costs ~1.5 µs more than `model_validate` of the same values
        return ClientData.model_validate({**plain, "billing_address": address, "extra": extra})

    def _route(self, field: str) -> _Route:
        """Where ``field`` goes: _SYSTEM (nowhere), _SPECIAL (`values` decides) or its `_placed` attribute path."""
        attribute = self.attribute(field)
        if attribute is None:
            route = _SYSTEM
        elif field == "Name" or attribute == "employees":
            route = _SPECIAL
        else:
            route = _placed(attribute)
        if len(self._routes) < _ROUTES_KEPT:
            self._routes[field] = route
        return route

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


def _placed(path: str) -> _Route:
    """The route of an attribute path (a path that names no part of a client is dropped from a full record)."""
    head, dot, rest = path.partition(".")
    repeated = path in REPEATED_ATTRIBUTES
    if not dot:
        return (path, 0, path, repeated)
    if head == "billing_address":
        return (path, 1, rest, repeated)
    if head == "extra":
        return (path, 2, rest, repeated)
    return (path, -1, rest, repeated)


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
