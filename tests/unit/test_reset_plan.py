"""`worker offsets reset` lands where Kafka's `kafka-consumer-groups --reset-offsets` would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.adapters.kafka.reset_plan import NoCommittedOffset, ResetSpec, parse_duration, parse_time, plan

CURRENT = {0: 5, 1: None}
EARLIEST = {0: 2, 1: 0}
END = {0: 10, 1: 4}


def new(spec: ResetSpec, at_time: dict[int, int | None] | None = None) -> list[int]:
    return [row.new for row in plan(spec, CURRENT, EARLIEST, END, at_time)]


def test_earliest_and_latest() -> None:
    assert new(ResetSpec("earliest")) == [2, 0] and new(ResetSpec("latest")) == [10, 4]


def test_explicit_offsets_and_shifts_are_clamped_into_the_log() -> None:
    assert new(ResetSpec("offset", 7)) == [7, 4]
    assert new(ResetSpec("offset", -1)) == [2, 0]
    assert [r.new for r in plan(ResetSpec("shift", -10), CURRENT, EARLIEST, {0: 10})] == [2]
    assert [r.new for r in plan(ResetSpec("shift", 30), CURRENT, EARLIEST, {0: 10})] == [10]


def test_a_shift_where_nothing_is_committed_is_an_error_naming_the_partition() -> None:
    with pytest.raises(NoCommittedOffset, match="partition 1"):
        plan(ResetSpec("shift", 3), CURRENT, EARLIEST, END)


def test_a_time_after_every_message_resolves_to_the_end() -> None:
    assert new(ResetSpec("datetime", 0), {0: 6, 1: None}) == [6, 4]


def test_durations_and_times_parse_in_iso_and_short_forms() -> None:
    assert parse_duration("PT1H30M") == timedelta(hours=1, minutes=30)
    assert parse_duration("P1D") == timedelta(days=1) and parse_duration("30m") == timedelta(minutes=30)
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert parse_time("2h", now) == datetime(2026, 11, 24, 10, tzinfo=UTC)
    assert parse_time("2026-11-24T10:00:00Z") == datetime(2026, 11, 24, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday-ish")
