"""The client projection: version guard, gaps, and each event type's effect on the summary row."""

from __future__ import annotations

from typing import Any

import pytest

from worker.application.projection import ProjectedEvent, Verdict, project

CHANGE = {"record_id": "001000000000001AAA", "transaction_key": "t", "sequence_number": 1,
          "commit_timestamp_ms": 1_700_000_000_000}
DETAILS: dict[str, Any] = {
    "name": "Acme", "type": "Customer", "industry": "Energy", "phone": None, "website": None,
    "billing_address": {"city": "Paris", "country": "France"}, "owner_id": "005", "annual_revenue": 10.0,
    "employees": 3, "rating": None, "account_source": None, "parent_id": None, "active": "Yes",
    "extra": {"Custom__c": 1},
}


def event(version: int, event_type: str, **payload: Any) -> ProjectedEvent:
    return ProjectedEvent(f"e{version}", event_type, "001000000000001AAA", version, {"change": CHANGE, **payload})


def registered() -> dict[str, Any]:
    result = project(None, event(1, "ClientRegistered", details=DETAILS, status="active"))
    assert result.verdict is Verdict.APPLIED and result.row is not None
    return result.row


def test_registration_fills_the_row_and_starts_the_status_history() -> None:
    result = project(None, event(1, "ClientRegistered", details=DETAILS, status="active"))
    assert result.row is not None
    assert result.row["name"] == "Acme" and result.row["billing_city"] == "Paris"
    assert result.row["extra"] == {"Custom__c": 1} and result.row["version"] == 1
    assert result.row["last_change_at"].year == 2023
    assert [(h["old_status"], h["new_status"]) for h in result.history] == [("unknown", "active")]


def test_a_redelivered_event_is_a_no_op() -> None:
    row = registered()
    assert project(row, event(1, "ClientRegistered", details=DETAILS, status="active")).verdict is Verdict.DUPLICATE


def test_a_version_gap_is_reported_and_not_applied() -> None:
    row = registered()
    result = project(row, event(3, "ClientDeleted"))
    assert result.verdict is Verdict.GAP and result.row is None


def test_details_changes_set_plain_address_and_extra_columns() -> None:
    changes = {"phone": [None, "+33"], "billing_address.city": ["Paris", "Lyon"], "extra.Custom__c": [1, 2]}
    result = project(registered(), event(2, "ClientDetailsChanged", changes=changes))
    assert result.row is not None
    assert (result.row["phone"], result.row["billing_city"], result.row["extra"]) == ("+33", "Lyon", {"Custom__c": 2})


def test_an_unknown_attribute_path_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(LookupError):
        project(registered(), event(2, "ClientDetailsChanged", changes={"nope": [1, 2]}))


def test_status_change_adds_history_and_delete_flags_the_row() -> None:
    status = project(registered(), event(2, "ClientStatusChanged", old_status="active", new_status="inactive"))
    assert status.row is not None and status.row["status"] == "inactive"
    assert status.history[0]["new_status"] == "inactive" and status.history[0]["version"] == 2
    deleted = project(status.row, event(3, "ClientDeleted"))
    assert deleted.row is not None and deleted.row["deleted"] is True


def test_resync_clears_the_flag_and_a_missing_record_marks_deleted() -> None:
    marked = project(registered(), event(2, "ClientMarkedForResync", reason="gap"))
    assert marked.row is not None and marked.row["needs_resync"] is True
    gone = project(marked.row, event(3, "ClientResynchronized", details=None, status="active", deleted=True,
                                     differences={}, as_of_ms=None))
    assert gone.row is not None
    assert gone.row["needs_resync"] is False and gone.row["deleted"] is True and gone.row["name"] == "Acme"


def test_an_unknown_client_marked_for_resync_is_not_listed_as_registered() -> None:
    result = project(None, event(1, "ClientMarkedForResync", reason="update for unknown client"))
    assert result.row is not None and result.row["registered"] is False
