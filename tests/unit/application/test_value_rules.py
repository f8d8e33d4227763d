"""Value rules: what PostgreSQL (jsonb, bigint/double/text columns) or Avro would refuse is refused by command
validation first, with the attribute named."""

from __future__ import annotations

import pydantic
import pytest

from tests.harness import _change
from worker.application.commands import ChangeClientDetails, ClientData, RegisterClient
from worker.application.validation import MAX_TEXT, validate_changes, validate_full_record

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
    # a JSON input's "\ud800" escape: text with no UTF-8 form (PostgreSQL, Kafka and Avro all refuse it)
    ("phone", "x\ud800y", "phone: contains an unpaired surrogate"),
    ("extra.Notes__c", "caf\u00e9 \udfff", "unpaired surrogate"),
    ("extra.Blob__c", {"a": ["\udc80"]}, "extra.Blob__c.a[0]: contains an unpaired surrogate"),
    ("extra.Blob__c", {"k\ud83d": 1}, "key: contains an unpaired surrogate"),
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
        "employees": 2**63 - 1, "annual_revenue": 1.5, "phone": None, "extra.X__c": {"a": [1, "b", None]},
        "name": "Caf\u00e9 \U0001f600 \u4e2d"})  # non-ASCII text (a pair of surrogates is one code point here)
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


@pytest.mark.parametrize("seed", range(5))
def test_a_model_is_checked_in_place_exactly_as_its_dump_would_be(seed: int) -> None:
    """model_problems walks the model instead of dumping it (the hot path): same problems, same order."""
    import random

    from worker.application.commands import AddressData, ChangeMetadata, ClientData
    from worker.application.validation import model_problems, value_problems

    rng = random.Random(seed)

    def text() -> str:
        return rng.choice(["", "a", "x\x00y", "z" * (MAX_TEXT + 1), "fine", "\x00"])

    for _ in range(300):
        meta = ChangeMetadata.model_construct(
            transaction_key=text() or "k", sequence_number=rng.randint(0, 9), commit_timestamp_ms=5,
            change_type=text(), change_origin=text(), correlation_id="c", causation_id=text() or "x",
            commit_user=rng.choice([None, text()]), traceparent=rng.choice([None, text()]))
        assert model_problems("change", meta) == value_problems("change", meta.model_dump())
        extra = {rng.choice(["a", "b\x00", "c"]): rng.choice(
            [1, 2**70, float("nan"), text(), [text(), {"k": text()}], None, True]) for _ in range(rng.randint(0, 3))}
        data = ClientData.model_construct(
            name=rng.choice([None, text()]), employees=rng.choice([None, 2**64, 3]), extra=extra,
            billing_address=AddressData.model_construct(city=text(), latitude=rng.choice([None, 1.5, float("inf")])))
        assert model_problems("data", data) == value_problems("data", data.model_dump())


class _Text(str):
    pass


class _Number(int):
    pass


_EDGE_VALUES = [None, True, False, 0, -1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 1.5, float("nan"),
                float("inf"), -float("inf"), "", "ok", "a\x00b", "\ud800", "\u00e9\udfff", "\u00e9", "x" * MAX_TEXT,
                "x" * (MAX_TEXT + 1), _Text("t"), _Number(5), {"a": 1}, {"a": float("nan")}, [1, "\x00"], {1: 2},
                (1, 2), b"bytes", object()]
_EDGE_PATHS = ["name", "employees", "annual_revenue", "billing_address.latitude", "billing_address.city",
               "extra.X__c", "phone"]


# ids by position and type: a repr with an address would differ between pytest-xdist workers
@pytest.mark.parametrize("value", _EDGE_VALUES, ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(_EDGE_VALUES)])
def test_the_inline_checks_never_pass_a_value_the_full_rules_refuse(value: object) -> None:
    """Validation passes clean values over inline (`_clean_scalar`, `_clean_attribute`) and sends the rest to the
    full rules: a value the inline check passes must be one the full rules have nothing to say of."""
    from worker.application.validation import _clean_attribute, _clean_scalar, attribute_problems, value_problems

    if _clean_scalar(value):
        assert value_problems("v", value) == []
    for path in _EDGE_PATHS:
        if _clean_attribute(path, value):
            assert attribute_problems(path, value) == [], path


def test_a_full_record_with_an_unpaired_surrogate_is_refused_by_the_value_rules() -> None:
    """pydantic takes such a text for a `str` field (only a constrained one, checked in its core, refuses it)."""
    data = ClientData(name="Acme", phone="x\ud800", extra={"Notes__c": "x\ud800", "Ok__c": "\u00e9"})
    problems = validate_full_record(RegisterClient(client_id=A, data=data, change=_change(A)))
    assert problems == ["data.phone: contains an unpaired surrogate (not Unicode text: no UTF-8 encoding)",
                        "data.extra.Notes__c: contains an unpaired surrogate (not Unicode text: no UTF-8 encoding)"]


def test_change_metadata_is_checked_by_its_model_or_else_by_the_value_rules() -> None:
    """A validated change metadata cannot hold a NUL or an over-long text (its model refuses them), so the value
    rules pass it over; one built without validation is checked by the rules."""
    from worker.application.commands import ChangeMetadata

    good = dict(transaction_key="k", sequence_number=1, commit_timestamp_ms=5, change_type="UPDATE",
                correlation_id="k", causation_id="t:0:1")
    for field, bad in [("transaction_key", "k\x00"), ("commit_user", "\x00"), ("traceparent", "x" * (MAX_TEXT + 1)),
                       ("source_topic", "t\x00"), ("change_origin", "a\nb\x00"), ("replay_id", "r\ud800")]:
        with pytest.raises(pydantic.ValidationError, match=field):
            ChangeMetadata(**{**good, field: bad})
        unvalidated = ChangeMetadata.model_construct(**{**good, field: bad})
        cmd = ChangeClientDetails(client_id=A, changes={"phone": "1"}, change=unvalidated)
        assert any(p.startswith(f"change.{field}: ") for p in validate_changes(cmd)), field
    assert ChangeMetadata(**{**good, "change_origin": "a\nb"}).validated
    assert validate_changes(ChangeClientDetails(client_id=A, changes={"phone": "1"}, change=ChangeMetadata(**good))) \
        == []


def test_a_refusal_quoting_a_text_with_no_utf8_form_is_written_with_its_escape() -> None:
    """The rules name the attribute, whose name can hold the surrogate itself (an unmapped field's): the message
    goes to logs, dead-letter headers and test reports, all UTF-8, so it carries the escape instead."""
    from worker.application.errors import InvalidCommand, printable
    from worker.application.validation import UntranslatableChange

    cmd = ChangeClientDetails(client_id=A, changes={"extra.Blob__c": {"k\ud800": "\udc00"}}, change=_change(A))
    error = InvalidCommand("ChangeClientDetails", validate_changes(cmd))
    assert "extra.Blob__c.k\\ud800: contains an unpaired surrogate" in str(error)
    assert all(p.encode() for p in error.problems)
    str(UntranslatableChange("KeyError: 'a\ud800'")).encode()
    assert printable("caf\u00e9") == "caf\u00e9" and printable("a\udfffb") == "a\\udfffb"
