"""The drift between a read-model row and Salesforce's record, by kind: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.application.commands import ClientData
from worker.application.ports import FetchedClient
from worker.application.projection import empty_row
from worker.application.reconcile import DriftKind, compare
from worker.domain import StatusRule

A = "001000000000001AAA"
RULE = StatusRule()
AS_OF_MS = 1_800_000_000_000
FETCHED = frozenset({"name", "phone", "active", "type", "billing_address.city", "extra.Region__c"})


def record(**fields: Any) -> FetchedClient:
    data = ClientData(**{"name": "Acme", "active": "Yes", "type": "Customer - Direct", "phone": "1",
                         "extra": {"Region__c": "EU"}, **fields})
    return FetchedClient(A, data, False, AS_OF_MS, FETCHED)


def row(**columns: Any) -> dict[str, Any]:
    base = empty_row(A)
    base.update(registered=True, name="Acme", active="Yes", type="Customer - Direct", phone="1", status="active",
                extra={"Region__c": "EU", "Only_here__c": "x"}, version=3,
                last_change_at=datetime.fromtimestamp(AS_OF_MS / 1000 - 60, UTC))
    base.update(columns)
    return base


def test_a_row_that_agrees_with_salesforce_is_no_drift_whatever_extra_keys_only_it_has() -> None:
    assert compare(row(), record(), RULE) is None


def test_differing_fields_and_status_are_named() -> None:
    drift = compare(row(phone="2", extra={"Region__c": "US"}, status="inactive"), record(), RULE)
    assert drift is not None and drift.kind is DriftKind.FIELD_DIFF
    assert drift.fields == ("extra.Region__c", "phone", "status")


def test_a_row_changed_after_the_record_was_read_is_not_drift() -> None:
    newer = datetime.fromtimestamp(AS_OF_MS / 1000 + 5, UTC)
    assert compare(row(phone="2", last_change_at=newer), record(), RULE) is None


def test_missing_gone_and_deleted_mismatch() -> None:
    assert compare(None, record(), RULE).kind is DriftKind.MISSING  # type: ignore[union-attr]
    assert compare(row(registered=False), record(), RULE).kind is DriftKind.MISSING  # type: ignore[union-attr]
    assert compare(row(deleted=True), record(), RULE).kind is DriftKind.DELETED_MISMATCH  # type: ignore[union-attr]
    deleted_there = FetchedClient(A, None, True, AS_OF_MS, FETCHED)
    assert compare(row(), deleted_there, RULE).kind is DriftKind.DELETED_MISMATCH  # type: ignore[union-attr]
    never_there = FetchedClient(A, None, True, None, FETCHED)
    assert compare(row(), never_there, RULE).kind is DriftKind.GONE  # type: ignore[union-attr]
    assert compare(row(deleted=True), never_there, RULE) is None
    assert compare(None, deleted_there, RULE) is None


def test_numbers_compare_by_value_across_integer_and_float_columns() -> None:
    assert compare(row(employees=120, annual_revenue=5e6),
                   FetchedClient(A, ClientData(name="Acme", active="Yes", type="Customer - Direct", phone="1",
                                               employees=120, annual_revenue=5_000_000,
                                               extra={"Region__c": "EU"}),
                                 False, AS_OF_MS, FETCHED | {"employees", "annual_revenue"}), RULE) is None
