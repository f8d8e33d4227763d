"""Business validation, kept apart from the structural (pydantic) step: validators per command type
return every problem they find; a batch validator looks across the commands of one batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from worker.application.commands import (
    ChangeClientDetails,
    ClientData,
    Command,
    RegisterClient,
    RestoreClient,
)

Validator = Callable[[Any], list[str]]

_NUMERIC_NON_NEGATIVE = ("annual_revenue", "employees")


def _client_data_problems(data: ClientData) -> list[str]:
    problems = []
    if not (data.name or "").strip():
        problems.append("a client needs a name")
    for attr in _NUMERIC_NON_NEGATIVE:
        value = getattr(data, attr)
        if value is not None and value < 0:
            problems.append(f"{attr} must not be negative (got {value})")
    return problems


def validate_full_record(cmd: RegisterClient | RestoreClient) -> list[str]:
    return _client_data_problems(cmd.data)


def validate_changes(cmd: ChangeClientDetails) -> list[str]:
    problems = []
    if "name" in cmd.changes and not (cmd.changes["name"] or "").strip():
        problems.append("name cannot be set to empty")
    for attr in _NUMERIC_NON_NEGATIVE:
        value = cmd.changes.get(attr)
        if isinstance(value, (int, float)) and value < 0:
            problems.append(f"{attr} must not be negative (got {value})")
    overlap = set(cmd.changes) & set(cmd.diffs)
    if overlap:
        problems.append(f"attributes both set and diffed: {sorted(overlap)}")
    return problems


VALIDATORS: Mapping[type[Command], Validator] = {
    RegisterClient: validate_full_record,
    RestoreClient: validate_full_record,
    ChangeClientDetails: validate_changes,
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
