"""Pub/Sub bitmap fields (`changedFields`, `nulledFields`, `diffFields`) decoded against the writer schema.

`0x…` is a bitmap over the top-level fields in schema order, position 0 = ChangeEventHeader, least significant
bit = position 0; `P-0x…` is a bitmap over the nested record of the top-level field at position P (compound
fields such as BillingAddress), giving `Parent.Child`. Upper- or lower-case hex; arrays may hold only nested
entries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.adapters.salesforce.errors import InvalidChangeEvent

_TOP = re.compile(r"^0[xX]([0-9a-fA-F]+)$")
_NESTED = re.compile(r"^(\d+)-0[xX]([0-9a-fA-F]+)$")
_ENTRY = re.compile(r"^(?:\d+-)?0[xX][0-9a-fA-F]+$")  # _TOP or _NESTED, in one match
# Decoded entry lists kept per layout: a schema's bitmaps recur message after message; the bound keeps hostile
# input (a new bitmap in every message) from growing the cache without end.
_REMEMBERED = 4096


@dataclass(frozen=True)
class FieldLayout:
    """Top-level field names in schema order, and the nested field names of record-typed fields."""

    names: tuple[str, ...]
    nested: dict[str, tuple[str, ...]]
    _decoded: dict[tuple[str, ...], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def decode(self, entries: tuple[str, ...]) -> list[str]:
        """`decode(entries, self)`, remembered: the same entries give the same names (errors are not kept)."""
        names = self._decoded.get(entries)
        if names is None:
            names = tuple(decode(entries, self))
            if len(self._decoded) < _REMEMBERED:
                self._decoded[entries] = names
        return list(names)


def is_bitmap(entries: Sequence[str]) -> bool:
    return any(_ENTRY.match(e) for e in entries)


def decode(entries: Sequence[str], layout: FieldLayout) -> list[str]:
    """Field names (compound parts as `Parent.Child`) set in the bitmap entries."""
    names: list[str] = []
    for entry in entries:
        top, nested = _TOP.match(entry), _NESTED.match(entry)
        if top:
            bits = int(top[1], 16)
            names += [_at(layout.names, i, entry) for i in _positions(bits) if i != 0]
        elif nested:
            parent = _at(layout.names, int(nested[1]), entry)
            children = layout.nested.get(parent)
            if children is None:
                raise InvalidChangeEvent(f"bitmap entry {entry!r}: field {parent} is not a compound field")
            names += [f"{parent}.{_at(children, i, entry)}" for i in _positions(int(nested[2], 16))]
        else:
            raise InvalidChangeEvent(f"not a bitmap entry: {entry!r}")
    return names


def _positions(bits: int) -> list[int]:
    return [i for i in range(bits.bit_length()) if (bits >> i) & 1]


def _at(names: Sequence[str], index: int, entry: str) -> str:
    if index >= len(names):
        raise InvalidChangeEvent(f"bitmap entry {entry!r} names position {index}, the schema has {len(names)}")
    return names[index]
