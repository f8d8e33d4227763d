"""Business validation, kept apart from the structural (pydantic) step: validators per command type
return every problem they find; a batch validator looks across the commands of one batch.

Value rules: whatever a change carries must be storable as it is (PostgreSQL jsonb and columns, Avro on the
events topic): no NaN or ±Infinity, no NUL character, no unpaired surrogate (a JSON input's "\ud800" escape
decodes to one: no UTF-8 text holds it), no integer beyond 64 bits, no text longer than Salesforce's longest,
only JSON values, and each attribute of its own type. A value that breaks one is refused
here (stage validate) with the attribute named, never by the database (which would stop the batch)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from worker.application.commands import (
    INT64_MAX,
    INT64_MIN,
    MAX_TEXT,
    ChangeClientDetails,
    ChangeMetadata,
    ClientData,
    Command,
    DeleteClient,
    MarkClientForResync,
    RegisterClient,
    RestoreClient,
    ResyncAllClients,
    ResyncClients,
)
from worker.application.errors import ApplicationError, printable

Validator = Callable[[Any], list[str]]

MAX_DIFF = 4 * MAX_TEXT
MAX_DEPTH = 32  # nesting of an unmapped field's JSON value
_NUMERIC_NON_NEGATIVE = ("annual_revenue", "employees")
_INTEGER_ATTRIBUTES = frozenset({"employees"})
_NUMBER_ATTRIBUTES = frozenset({"annual_revenue", "billing_address.latitude", "billing_address.longitude"})
# A surrogate code point: in a str only when something decoded an escape of one (JSON's "\ud800"); UTF-8 (what
# PostgreSQL, Kafka and Avro take) has no encoding for it. (An ASCII text, most of them, is not searched.)
_SURROGATE = re.compile("[\ud800-\udfff]")


class UntranslatableChange(ApplicationError):
    """A parsed change whose content cannot become commands (stage translate). ``client_ids`` are the clients
    its header names (empty when none is a valid id), so they are held back until a resync."""

    def __init__(self, reason: str, client_ids: Sequence[str] = ()) -> None:
        super().__init__(printable(reason))
        self.client_ids = tuple(client_ids)


class InvalidChangeValues(UntranslatableChange):
    """The commands built from a change break the command contract: a value of the wrong type or out of range
    (stage validate)."""


def value_problems(path: str, value: Any, *, max_text: int = MAX_TEXT, depth: int = 0) -> list[str]:
    """What a store would refuse in ``value`` (a JSON value), each problem naming ``path``."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [] if INT64_MIN <= value <= INT64_MAX else [f"{path}: integer {value} does not fit in 64 bits"]
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{path}: {value} is not a storable number"]
    if isinstance(value, str):
        return _text_problems(path, value, max_text)
    if depth >= MAX_DEPTH:
        return [f"{path}: nested deeper than {MAX_DEPTH} levels"]
    if isinstance(value, Mapping):
        problems = []
        for key, inner in value.items():
            if not isinstance(key, str):
                problems.append(f"{path}: key {key!r} is not a text")
                continue
            problems += _text_problems(f"{path} key", key, max_text)
            problems += value_problems(f"{path}.{key}", inner, max_text=max_text, depth=depth + 1)
        return problems
    if isinstance(value, (list, tuple)):
        return [p for i, inner in enumerate(value)
                for p in value_problems(f"{path}[{i}]", inner, max_text=max_text, depth=depth + 1)]
    return [f"{path}: a {type(value).__name__} is not a JSON value"]


def _text_problems(path: str, text: str, max_text: int) -> list[str]:
    problems = []
    if "\x00" in text:
        problems.append(f"{path}: contains a NUL character")
    if not text.isascii() and _SURROGATE.search(text):
        problems.append(f"{path}: contains an unpaired surrogate (not Unicode text: no UTF-8 encoding)")
    if len(text) > max_text:
        problems.append(f"{path}: {len(text)} characters, more than {max_text}")
    return problems


def attribute_problems(path: str, value: Any) -> list[str]:
    """The type an attribute must have (what its read-model column holds), then the value rules."""
    if value is None:
        return []
    if path in _INTEGER_ATTRIBUTES:
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path} must be an integer (got {type(value).__name__} {_short(value)})"]
    elif path in _NUMBER_ATTRIBUTES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{path} must be a number (got {type(value).__name__} {_short(value)})"]
    elif not path.startswith("extra.") and not isinstance(value, str):
        return [f"{path} must be a text (got {type(value).__name__} {_short(value)})"]
    return value_problems(path, value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def model_problems(path: str, model: BaseModel, depth: int = 0) -> list[str]:
    """`value_problems(path, model.model_dump())` without the dump: the model's fields are walked in place
    (in declaration order, as the dump has them), clean scalars passed over inline, so a clean model costs a pass
    over its values and nothing else. Field names are identifiers: their own text needs no check."""
    problems: list[str] = []
    for key, value in model.__dict__.items():
        kind = type(value)  # `_clean_scalar` inline: a call per value was most of a clean model's cost
        if kind is str:
            if len(value) <= MAX_TEXT and "\x00" not in value and (value.isascii() or not _SURROGATE.search(value)):
                continue
        elif value is None or kind is bool or (kind is int and INT64_MIN <= value <= INT64_MAX) or (
                kind is float and math.isfinite(value)):
            continue
        if isinstance(value, BaseModel):
            problems += model_problems(f"{path}.{key}", value, depth + 1)
        elif type(value) is str:
            problems += _text_problems(f"{path}.{key}", value, MAX_TEXT)
        else:
            problems += value_problems(f"{path}.{key}", value, depth=depth + 1)
    return problems


def _clean_scalar(value: Any) -> bool:
    """True for a scalar `value_problems` has nothing to say of (checked inline: most values are these); False
    sends the value to the full check, which names the problem if there is one."""
    kind = type(value)
    if kind is str:
        return _clean_text(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return bool(INT64_MIN <= value <= INT64_MAX)
    return kind is float and math.isfinite(value)


def _clean_attribute(path: str, value: Any) -> bool:
    """True when `attribute_problems(path, value)` has nothing to say (the common case, checked inline)."""
    if value is None:
        return True
    kind = type(value)
    if path in _INTEGER_ATTRIBUTES:
        return kind is int and INT64_MIN <= value <= INT64_MAX
    if path in _NUMBER_ATTRIBUTES:
        return (kind is int and INT64_MIN <= value <= INT64_MAX) or (kind is float and math.isfinite(value))
    if path.startswith("extra."):
        return _clean_scalar(value)
    return kind is str and _clean_text(value)


def _clean_text(text: str) -> bool:
    """True when `_text_problems` has nothing to say of ``text``."""
    return len(text) <= MAX_TEXT and "\x00" not in text and (text.isascii() or not _SURROGATE.search(text))


def _change_problems(change: ChangeMetadata | None) -> list[str]:
    # A validated one holds nothing these rules refuse (its model bounds its integers and checks its texts).
    return model_problems("change", change) if change is not None and not change.validated else []


def _client_data_problems(data: ClientData) -> list[str]:
    problems = []
    if not (data.name or "").strip():
        problems.append("a client needs a name")
    for attr in _NUMERIC_NON_NEGATIVE:
        value = getattr(data, attr)
        if value is not None and value < 0:
            problems.append(f"{attr} must not be negative (got {value})")
    return problems + model_problems("data", data)


def validate_full_record(cmd: RegisterClient | RestoreClient) -> list[str]:
    return _client_data_problems(cmd.data) + _change_problems(cmd.change)


def validate_changes(cmd: ChangeClientDetails) -> list[str]:
    problems = []
    name = cmd.changes.get("name")
    if "name" in cmd.changes and (name is None or (isinstance(name, str) and not name.strip())):
        problems.append("name cannot be set to empty")
    for path, value in cmd.changes.items():
        if not _clean_text(path) or not _clean_attribute(path, value):
            problems += _text_problems("attribute", path, MAX_TEXT) + attribute_problems(path, value)
    for attr in _NUMERIC_NON_NEGATIVE:
        value = cmd.changes.get(attr)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            problems.append(f"{attr} must not be negative (got {value})")
    for path, patch in cmd.diffs.items():
        problems += _text_problems("diffed attribute", path, MAX_TEXT)
        problems += value_problems(f"diff of {path}", patch, max_text=MAX_DIFF)
    overlap = set(cmd.changes) & set(cmd.diffs) if cmd.diffs else None
    if overlap:
        problems.append(f"attributes both set and diffed: {sorted(overlap)}")
    return problems + _change_problems(cmd.change)


def validate_change_only(cmd: DeleteClient | MarkClientForResync | ResyncClients | ResyncAllClients) -> list[str]:
    reason = getattr(cmd, "reason", None)
    return value_problems("reason", reason) + _change_problems(cmd.change)


VALIDATORS: Mapping[type[Command], Validator] = {
    RegisterClient: validate_full_record,
    RestoreClient: validate_full_record,
    ChangeClientDetails: validate_changes,
    DeleteClient: validate_change_only,
    MarkClientForResync: validate_change_only,
    ResyncClients: validate_change_only,
    ResyncAllClients: validate_change_only,
}


def duplicate_changes(commands: Sequence[Command]) -> set[int]:
    """Cross-command check within a batch: indexes of commands repeating an earlier change identity
    (a merged or redelivered message seen twice in one batch). They are dropped, not failed."""
    seen: set[tuple[str, str, int, str]] = set()
    duplicates = set()
    for index, cmd in enumerate(commands):
        change = getattr(cmd, "change", None)
        client_id = getattr(cmd, "client_id", None)
        if change is None or client_id is None:
            continue
        key = (type(cmd).__name__, change.transaction_key, change.sequence_number, client_id)
        if key in seen:
            duplicates.add(index)
        seen.add(key)
    return duplicates
