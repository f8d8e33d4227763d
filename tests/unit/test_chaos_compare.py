"""The chaos comparison fails on any difference and shows it; the same end state passes."""

from __future__ import annotations

from tests.chaos.compare import Outcome, compare


def outcome(name: str, phone: str = "+1 555", letters: tuple[str, ...] = ("a1",), lag: int = 0) -> Outcome:
    return Outcome(
        name, "unused", summary={"001A": {"phone": phone, "version": 3}}, history={"001A@1": {"new_status": "active"}},
        streams={"001A": (3, "md5")}, dead_letters={"ingest": {h: ("parse", "InvalidChangeEvent") for h in letters}},
        dead_letter_records={"ingest": len(letters)}, lag={"ingest": lag, "projector": 0}, outbox=0,
    )


def test_the_same_end_state_passes() -> None:
    verdict = compare(outcome("reference"), outcome("chaos"))
    assert verdict.failures == 0, verdict.lines


def test_a_changed_field_a_lost_dead_letter_and_lag_each_fail_with_the_first_difference_shown() -> None:
    verdict = compare(outcome("reference"), outcome("chaos", phone="+1 556", letters=(), lag=4))
    assert verdict.failures == 3
    text = "\n".join(verdict.lines)
    assert 'phone: reference="+1 555" chaos="+1 556"' in text
    assert "a1: only in reference" in text
    assert 'FAILED  chaos: lag: {"ingest": 4, "projector": 0}' in text
