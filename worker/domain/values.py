"""Value objects of the client domain: plain, frozen, standard library only."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import lru_cache
from operator import attrgetter
from typing import Any, TypeVar

from worker.domain.codec import decode, encode
from worker.domain.errors import UnknownAttribute

_T = TypeVar("_T")


def frozen_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A function that builds a frozen slotted dataclass ``cls`` (no ``__post_init__``) from its field values in
    order, without ``__init__``: it sets each slot through its descriptor (2.5x faster than the dataclass's frozen
    ``__init__``, which goes through ``object.__setattr__`` for each field)."""
    constructor: Callable[..., _T] = _slot_function(cls, f"new_{cls.__name__}", None, lambda name: name)
    return constructor


def _slot_function(cls: type[Any], name: str, params: str | None, value_of: Callable[[str], str]) -> Any:
    """A function ``name(params)`` (the field names when None) compiled for the slotted ``cls``: it makes a new one
    and sets each field to ``value_of(field)`` (an expression of the parameters) through its slot's descriptor."""
    names = [f.name for f in fields(cls)]
    setters = {f"set_{n}": getattr(cls, n).__set__ for n in names}
    body = "".join(f"    set_{n}(made, {value_of(n)})\n" for n in names)
    namespace: dict[str, Any] = {}
    exec(f"def {name}({', '.join(names) if params is None else params}):\n    made = new(cls)\n{body}    return made\n",
         {"new": object.__new__, "cls": cls, **setters}, namespace)
    return namespace[name]


@dataclass(frozen=True, slots=True)
class ChangeRef:
    """Salesforce's identity and position of one change of one record."""

    record_id: str
    transaction_key: str
    sequence_number: int
    commit_timestamp_ms: int
    commit_number: int | None = None
    last_modified_ms: int | None = None

    @property
    def identity(self) -> tuple[str, int, str]:
        return (self.transaction_key, self.sequence_number, self.record_id)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = encode(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeRef:
        return decode(cls, data)


# ChangeRef(record_id, transaction_key, sequence_number, commit_timestamp_ms, commit_number, last_modified_ms), all
# positional: one is made for every command.
new_change_ref = frozen_constructor(ChangeRef)


@dataclass(frozen=True, slots=True)
class Address:
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    state_code: str | None = None
    country_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    geocode_accuracy: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = encode(self)
        return data


ADDRESS_PARTS = tuple(f.name for f in fields(Address))


@dataclass(frozen=True, slots=True)
class ClientDetails:
    """What the business knows of a client. ``extra`` holds unmapped Salesforce fields by their name.
    The field order is the stored payload's key order: plain attributes, then the address, then ``extra``."""

    name: str | None = None
    type: str | None = None
    industry: str | None = None
    phone: str | None = None
    website: str | None = None
    owner_id: str | None = None
    annual_revenue: float | None = None
    employees: int | None = None
    rating: str | None = None
    account_source: str | None = None
    parent_id: str | None = None
    active: str | None = None
    billing_address: Address = field(default_factory=Address)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "billing_address" and rest in ADDRESS_PARTS:
            return getattr(self.billing_address, rest)
        if head == "extra" and rest:
            return self.extra.get(rest)
        if head in PLAIN_ATTRIBUTES and not rest:
            return getattr(self, head)
        raise UnknownAttribute(path)

    def with_changes(self, changes: Mapping[str, Any]) -> ClientDetails:
        """A copy with ``changes`` (attribute path -> new value, None = set to null) applied. The parts a change
        does not touch (the address, ``extra``) are shared with this one, never copied: both are immutable."""
        plain: dict[str, Any] = {}
        address: dict[str, Any] = {}
        extra: dict[str, Any] | None = None
        for path, value in changes.items():
            head, dot, rest = path.partition(".")
            if head == "billing_address" and rest in ADDRESS_PARTS:
                address[rest] = value
            elif head == "extra" and rest:
                if extra is None:
                    extra = dict(self.extra)
                extra[rest] = value
            elif not dot and head in PLAIN_ATTRIBUTES:
                plain[head] = value
            else:
                raise UnknownAttribute(path)
        if address:
            plain["billing_address"] = _copy(self.billing_address, address)
        if extra is not None:
            plain["extra"] = extra
        return _copy(self, plain)

    def paths(self) -> dict[str, Any]:
        """Every attribute by path: plain ones, address components, extra keys."""
        flat = dict(zip(PLAIN_ATTRIBUTES, _plain_values(self), strict=True))
        flat.update(zip(_ADDRESS_PATH_NAMES, _address_values(self.billing_address), strict=True))
        flat.update({f"extra.{key}": value for key, value in self.extra.items()})
        return flat

    def diff(self, other: ClientDetails) -> dict[str, tuple[Any, Any]]:
        """Attribute path -> (value here, value in ``other``) for every path that differs, sorted by path (an
        absent ``extra`` key counts as null). Parts both share (``with_changes`` shares what it leaves alone) are
        not compared."""
        if other is self:
            return {}
        found: dict[str, tuple[Any, Any]] = {}
        for name, a, b in zip(PLAIN_ATTRIBUTES, _plain_values(self), _plain_values(other), strict=True):
            if a != b:
                found[name] = (a, b)
        if self.billing_address is not other.billing_address:
            for path, a, b in zip(_ADDRESS_PATH_NAMES, _address_values(self.billing_address),
                                  _address_values(other.billing_address), strict=True):
                if a != b:
                    found[path] = (a, b)
        if self.extra is not other.extra:
            for key in self.extra.keys() | other.extra.keys():
                a, b = self.extra.get(key), other.extra.get(key)
                if a != b:
                    found[f"extra.{key}"] = (a, b)
        return dict(sorted(found.items())) if len(found) > 1 else found

    def changed_by(self, changes: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """``self.diff(self.with_changes(changes))`` without building the copy: attribute path -> (value here, value
        in ``changes``) for each path whose value differs, sorted by path (an absent ``extra`` key counts as
        null; an unknown path raises UnknownAttribute). An update names a few attributes: comparing those is
        cheaper than copying the details and comparing them whole."""
        found: dict[str, tuple[Any, Any]] = {}
        for path, new in changes.items():
            old = self.get(path)
            if old != new:
                found[path] = (old, new)
        return dict(sorted(found.items())) if len(found) > 1 else found

    def with_shared_values(self) -> ClientDetails:
        """Equal details whose repeated attributes hold the strings `shared` keeps for all (this one when they
        already do): the same values, less memory for a client kept between batches."""
        plain = {name: kept for name in _REPEATED_PLAIN
                 if (kept := shared(value := getattr(self, name))) is not value}
        address = {part: kept for part in _REPEATED_ADDRESS
                   if (kept := shared(value := getattr(self.billing_address, part))) is not value}
        if address:
            plain["billing_address"] = _copy(self.billing_address, address)
        return _copy(self, plain)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = encode(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientDetails:
        return decode(cls, data)


PLAIN_ATTRIBUTES = tuple(f.name for f in fields(ClientDetails) if f.name not in ("billing_address", "extra"))

# Attributes whose values repeat across clients (picklists, owners, places). The aggregates kept in memory share one
# string per distinct value of these (`shared`) instead of each holding its own copy: ~0.5 KB of ~3 KB a client.
REPEATED_ATTRIBUTES = frozenset({
    "type", "industry", "owner_id", "rating", "account_source", "active",
    *(f"billing_address.{part}" for part in ("city", "state", "country", "state_code", "country_code",
                                             "geocode_accuracy")),
})
# The shared strings: at most SHARED_MAX distinct values, each at most SHARED_LENGTH characters (a value past
# either bound is kept as it is: equal, just not shared). Only values are kept: ~100 bytes each at most.
SHARED_MAX = 16_384
SHARED_LENGTH = 80
_SHARED: dict[str, str] = {}


def shared(value: Any) -> Any:
    """The one string kept for all that equals ``value`` (a str of a repeated attribute); ``value`` itself when it
    is not a str (a subclass neither), is longer than SHARED_LENGTH, or the table is full."""
    if type(value) is not str:
        return value
    found = _SHARED.get(value)
    if found is not None:
        return found
    if len(_SHARED) < SHARED_MAX and len(value) <= SHARED_LENGTH:
        # interned: `marshal` writes an interned string as such and interns it again as it reads it, so an
        # unpacked aggregate (`worker.domain.packing`) gets this very string back, with no lookup of its own
        value = _SHARED[value] = sys.intern(value)
    return value


def is_shared(value: object) -> bool:
    """Whether ``value`` is the string `shared` keeps for all (held once, however many clients hold it)."""
    return type(value) is str and _SHARED.get(value) is value


_ADDRESS_PATH_NAMES = tuple(f"billing_address.{part}" for part in ADDRESS_PARTS)
_REPEATED_PLAIN = tuple(name for name in PLAIN_ATTRIBUTES if name in REPEATED_ATTRIBUTES)
_REPEATED_ADDRESS = tuple(part for part in ADDRESS_PARTS if f"billing_address.{part}" in REPEATED_ATTRIBUTES)
_plain_values = attrgetter(*PLAIN_ATTRIBUTES)
_address_values = attrgetter(*ADDRESS_PARTS)
_FrozenT = TypeVar("_FrozenT")
_COPIERS: dict[type[Any], Callable[[Any, Mapping[str, Any]], Any]] = {}


def _copy(value: _FrozenT, changes: Mapping[str, Any]) -> _FrozenT:
    """``dataclasses.replace`` for these plain frozen value classes (slots, no ``__post_init__``, no init-only
    fields): each field set once, from ``changes`` or the instance, by a function compiled per class
    (``replace`` was a fifth of deciding on an update)."""
    if not changes:
        return value
    cls = type(value)
    copier = _COPIERS.get(cls)
    if copier is None:
        copier = _COPIERS[cls] = _slot_function(
            cls, "copy", "v, changes", lambda n: f"changes[{n!r}] if {n!r} in changes else v.{n}")
    copied: _FrozenT = copier(value, changes)
    return copied


class ClientStatus(StrEnum):
    PROSPECT = "prospect"
    ACTIVE = "active"
    INACTIVE = "inactive"
    UNKNOWN = "unknown"


@lru_cache(maxsize=16)
def _lowered(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.lower() for p in prefixes)


@dataclass(frozen=True)
class StatusRule:
    """Derives a client's status from its record; the default mirrors Salesforce's sample org
    (`Type` "Prospect…", the `Active__c` Yes/No picklist)."""

    prospect_types: tuple[str, ...] = ("Prospect",)
    active_values: tuple[str, ...] = ("Yes",)
    inactive_values: tuple[str, ...] = ("No",)

    def derive(self, details: ClientDetails) -> ClientStatus:
        return self.status_of(details.type, details.active)

    def status_of(self, kind: str | None, active: str | None) -> ClientStatus:
        """The status of a record whose ``type`` is ``kind`` and ``active`` is ``active`` (all `derive` reads)."""
        kind = (kind or "").strip().lower()
        if kind and kind.startswith(_lowered(self.prospect_types)):
            return ClientStatus.PROSPECT
        if active in self.active_values:
            return ClientStatus.ACTIVE
        if active in self.inactive_values:
            return ClientStatus.INACTIVE
        return ClientStatus.UNKNOWN

    def allowed(self, old: ClientStatus, new: ClientStatus) -> bool:
        """A customer (active or churned) never becomes a prospect again."""
        return not (old in (ClientStatus.ACTIVE, ClientStatus.INACTIVE) and new is ClientStatus.PROSPECT)


@dataclass(frozen=True)
class TextDiff:
    """A Salesforce unified diff of a long text value (see `text_diff.apply_unified_diff`)."""

    patch: str
