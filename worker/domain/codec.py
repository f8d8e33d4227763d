"""The one codec between the domain's frozen dataclasses and JSON-ready values, derived from the fields' types.

`encode` writes a dataclass as a dict of its fields in declaration order (enums by value, tuples as lists);
`decode` reads it back by the type hints. A key that is absent or null takes the field's default, so payloads
stored before a field with a default existed still load; a missing field without one is a `MalformedPayload`.
Each class's plan is derived once from its type hints and reused (ingest encodes every event it appends).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")
Convert = Callable[[Any], Any]
_SCALARS = (str, int, float, bool)


class MalformedPayload(ValueError):
    """A stored or received payload does not have the shape of its dataclass."""


@dataclass(frozen=True)
class _FieldPlan:
    name: str
    write: Convert
    read: Convert
    optional: bool
    has_default: bool


def encode(value: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dataclass instance ``value`` as a JSON-ready dict; ``skip`` names fields left out."""
    key = (type(value), skip)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        encoder = _ENCODERS[key] = _compile_encoder(type(value), skip)
    return encoder(value)


_ENCODERS: dict[tuple[type[Any], tuple[str, ...]], Callable[[Any], dict[str, Any]]] = {}


def _compile_encoder(cls: type[Any], skip: tuple[str, ...]) -> Callable[[Any], dict[str, Any]]:
    """One function per class (and fields skipped) that builds the dict in one expression, as `dataclasses`
    builds ``__init__``: ingest encodes every event it appends, and a loop over the plan cost a third of that."""
    writers: dict[str, Convert] = {}
    items = []
    for i, f in enumerate(_plan(cls)):
        if f.name in skip:
            continue
        if not f.name.isidentifier():  # pragma: no cover - dataclass fields are identifiers
            raise TypeError(f"{cls.__name__}.{f.name} is not an identifier")
        if f.write is _identity:
            items.append(f"{f.name!r}: v.{f.name}")
        else:
            writers[f"w{i}"] = f.write
            items.append(f"{f.name!r}: w{i}(v.{f.name})")
    namespace: dict[str, Any] = {}
    exec(f"def encode_{cls.__name__}(v):\n    return {{{', '.join(items)}}}\n", dict(writers), namespace)
    compiled: Callable[[Any], dict[str, Any]] = namespace[f"encode_{cls.__name__}"]
    return compiled


def decode(cls: type[T], data: Mapping[str, Any], **given: Any) -> T:
    """The dataclass ``cls`` from ``data``; ``given`` supplies fields that are not in the payload."""
    if not isinstance(data, Mapping):
        raise MalformedPayload(f"{cls.__name__} needs an object, got {type(data).__name__}")
    values = dict(given)
    for f in _plan(cls):
        if f.name in given:
            continue
        raw = data.get(f.name)
        if raw is not None:
            try:
                values[f.name] = f.read(raw)
            except (TypeError, ValueError, AttributeError) as exc:
                raise MalformedPayload(f"{cls.__name__}.{f.name}: {exc}") from exc
        elif f.optional:
            values[f.name] = None
        elif not f.has_default:
            raise MalformedPayload(f"{cls.__name__} payload lacks {f.name!r}")
    return cls(**values)


def field_types(cls: type[Any]) -> dict[str, Any]:
    """Field name -> resolved type hint, in declaration order (what the Avro contract test compares)."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


_PLANS: dict[type[Any], tuple[_FieldPlan, ...]] = {}


def _plan(cls: type[Any]) -> tuple[_FieldPlan, ...]:
    plan = _PLANS.get(cls)
    if plan is None:
        hints = get_type_hints(cls)
        plan = tuple(
            _FieldPlan(f.name, _writer(hints[f.name]), _reader(hints[f.name]), _optional(hints[f.name]),
                       _has_default(f))
            for f in fields(cls)
            if f.init
        )
        _PLANS[cls] = plan
    return plan


def _has_default(f: Field[Any]) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def _optional(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)


def _identity(value: Any) -> Any:
    return value


def _writer(hint: Any) -> Convert:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        inner = _writer(kinds[0]) if len(kinds) == 1 else _identity
        return _identity if inner is _identity else (lambda v: None if v is None else inner(v))
    if isinstance(hint, type) and is_dataclass(hint):
        return encode
    if isinstance(hint, type) and issubclass(hint, Enum):
        return lambda v: v.value
    if origin in (Mapping, dict):
        item = _writer(args[1]) if args else _identity
        return lambda v: {key: item(x) for key, x in v.items()}
    if origin is tuple:
        return list  # values of `Any` inside are stored as they are
    return _identity  # plain values and Any, as they are


def _reader(hint: Any) -> Convert:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1 or kinds[0] in _SCALARS:
            return _identity  # optional plain values are kept exactly as stored (1000 stays 1000, not 1000.0)
        return _reader(kinds[0])
    if isinstance(hint, type) and is_dataclass(hint):
        return lambda raw: decode(hint, raw)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if origin in (Mapping, dict):
        item = _reader(args[1]) if args else _identity
        return lambda raw: {key: item(x) for key, x in raw.items()}
    if origin is tuple:
        return _tuple_reader(args)
    if hint in _SCALARS:
        scalar: Convert = hint  # a required plain value: the type the field declares
        return scalar
    return _identity  # Any


def _tuple_reader(args: tuple[Any, ...]) -> Convert:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _reader(args[0])
        return lambda raw: tuple(item(x) for x in raw)
    readers = [_reader(arg) for arg in args]

    def read(raw: Any) -> tuple[Any, ...]:
        if len(raw) != len(readers):
            raise MalformedPayload(f"needs {len(readers)} items, got {len(raw)}")
        return tuple(r(x) for r, x in zip(readers, raw, strict=True))

    return read
