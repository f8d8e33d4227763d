"""The one codec between the domain's frozen dataclasses and JSON-ready values, derived from the fields' types.

`encode` writes a dataclass as a dict of its fields in declaration order (enums by value, tuples as lists);
`decode` reads it back by the type hints. A key that is absent or null takes the field's default, so payloads
stored before a field with a default existed still load; a missing field without one is a `MalformedPayload`.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields, is_dataclass
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")
_SCALARS = (str, int, float, bool)


class MalformedPayload(ValueError):
    """A stored or received payload does not have the shape of its dataclass."""


def encode(value: Any, *, skip: tuple[str, ...] = ()) -> Any:
    """A JSON-ready copy of ``value``; ``skip`` names top-level dataclass fields left out."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in fields(value) if f.name not in skip}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [encode(item) for item in value]
    return value


def decode(cls: type[T], data: Mapping[str, Any], **given: Any) -> T:
    """The dataclass ``cls`` from ``data``; ``given`` supplies fields that are not in the payload."""
    if not isinstance(data, Mapping):
        raise MalformedPayload(f"{cls.__name__} needs an object, got {type(data).__name__}")
    hints = _hints(cls)
    values = dict(given)
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in given or not f.init:
            continue
        raw = data.get(f.name)
        if raw is not None:
            values[f.name] = _value(hints[f.name], raw, f"{cls.__name__}.{f.name}")
        elif _optional(hints[f.name]):
            values[f.name] = None
        elif not _has_default(f):
            raise MalformedPayload(f"{cls.__name__} payload lacks {f.name!r}")
    return cls(**values)


def field_types(cls: type[Any]) -> dict[str, Any]:
    """Field name -> resolved type hint, in declaration order (what the Avro contract test compares)."""
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _has_default(f: Field[Any]) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def _optional(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _value(hint: Any, raw: Any, where: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1 or kinds[0] in _SCALARS:
            return raw  # optional plain values are kept exactly as stored (1000 stays 1000, not 1000.0)
        return _value(kinds[0], raw, where)
    if isinstance(hint, type) and is_dataclass(hint):
        return decode(hint, raw)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(raw)
    if origin in (Mapping, dict):
        return {key: _value(args[1], item, where) for key, item in raw.items()}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], item, where) for item in raw)
        if len(raw) != len(args):
            raise MalformedPayload(f"{where} needs {len(args)} items, got {len(raw)}")
        return tuple(_value(arg, item, where) for arg, item in zip(args, raw, strict=True))
    if hint in _SCALARS:
        return hint(raw)  # a required plain value: the type the field declares
    return raw  # Any
