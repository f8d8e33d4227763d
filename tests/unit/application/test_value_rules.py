"""Value rules: what PostgreSQL (jsonb, bigint/double/text columns) or Avro would refuse is refused by command
validation first, with the attribute named."""

from __future__ import annotations

import pydantic
import pytest

from tests.harness import _change
from worker.application.commands import ChangeClientDetails, ClientData, RegisterClient
from worker.application.validation import validate_changes, validate_full_record

A = "001000000000001AAA"


@pytest.mark.parametrize(("path", "value", "problem"), [
    ("annual_revenue", float("nan"), "not a storable number"),
    ("billing_address.latitude", float("inf"), "not a storable number"),
    ("employees", "12", "must be an integer"),
    ("employees", True, "must be an integer"),
    ("employees", 2**63, "64 bits"),
    ("phone", 5551234, "must be a text"),
    ("phone", "+1\x00", "NUL"),
    ("extra.Notes__c", "x" * 131_073, "more than 131072"),
    ("extra.Blob__c", {"a": [float("-inf")]}, "extra.Blob__c.a[0]"),
    ("extra.Blob__c", {"k\x00": 1}, "key: contains a NUL"),
    ("extra.Blob__c", b"bytes", "not a JSON value"),
])
def test_an_update_value_a_store_would_refuse_is_a_validation_problem(path: str, value: object, problem: str) -> None:
    cmd = ChangeClientDetails(client_id=A, changes={path: value}, change=_change(A))
    assert any(problem in p for p in validate_changes(cmd)), validate_changes(cmd)


def test_a_diffed_attribute_whose_name_has_a_nul_is_refused() -> None:
    """Found by the fuzz: the domain names the path in a resync reason, which jsonb then refused."""
    cmd = ChangeClientDetails(client_id=A, diffs={"extra.\x00": "None"}, change=_change(A))
    assert any("diffed attribute: contains a NUL" in p for p in validate_changes(cmd))


def test_storable_values_pass() -> None:
    cmd = ChangeClientDetails(client_id=A, change=_change(A), changes={
        "employees": 2**63 - 1, "annual_revenue": 1.5, "phone": None, "extra.X__c": {"a": [1, "b", None]}})
    assert validate_changes(cmd) == []


def test_a_full_record_with_a_nul_or_an_unstorable_extra_value_is_refused() -> None:
    data = ClientData(name="Ac\x00me", extra={"Score__c": float("nan")})
    problems = validate_full_record(RegisterClient(client_id=A, data=data, change=_change(A)))
    assert any("data.name" in p and "NUL" in p for p in problems)
    assert any("data.extra.Score__c" in p for p in problems)


@pytest.mark.parametrize("data", [{"annual_revenue": float("nan")}, {"employees": 2**70}, {"employees": "many"}])
def test_the_command_contract_refuses_nan_overflow_and_wrong_types(data: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ClientData(name="Acme", **data)
