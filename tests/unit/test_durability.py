"""The durability decision at start, with a fake reader: which settings lose acknowledged commits, one warning or a
refusal, the gauge, and what readiness reports."""

from __future__ import annotations

import logging

import pytest

from worker.adapters.postgres.durability import Durability
from worker.health import DatabaseNotDurable, DurabilityGate

DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
TEST_STACK = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.mark.parametrize("synchronous_commit", ["on", "local", "remote_write", "remote_apply"])
def test_a_server_that_flushes_before_acknowledging_is_durable(synchronous_commit: str) -> None:
    verdict = Durability({**DURABLE, "synchronous_commit": synchronous_commit})
    assert verdict.durable and verdict.unsafe == []


@pytest.mark.parametrize("name", sorted(DURABLE))
def test_each_setting_off_alone_makes_the_server_not_durable(name: str) -> None:
    verdict = Durability({**DURABLE, name: "off"})
    assert not verdict.durable and verdict.unsafe == [f"{name}=off"]
    assert f"{name}=off" in verdict.describe()


class Gauge:
    def __init__(self) -> None:
        self.values: list[bool] = []

    def __call__(self, durable: bool) -> None:
        self.values.append(durable)


def test_a_non_durable_server_gives_one_warning_naming_the_settings_and_a_gauge_at_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gauge = Gauge()
    gate = DurabilityGate(lambda: Durability(TEST_STACK), required=False, report=gauge)
    with caplog.at_level(logging.INFO, logger="worker.health"):
        gate.start()
        ok, detail = gate.check()
        gate.check()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert all(s in warnings[0].getMessage() for s in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"))
    assert gauge.values == [False]
    assert ok and detail.startswith("NOT durable: fsync=off")  # reported, but not a reason to be unready


def test_required_durability_refuses_a_non_durable_server_with_one_line() -> None:
    gauge = Gauge()
    gate = DurabilityGate(lambda: Durability({**DURABLE, "fsync": "off"}), required=True, report=gauge)
    with pytest.raises(DatabaseNotDurable) as refused:
        gate.start()
    message = str(refused.value)
    assert "\n" not in message and "fsync=off" in message and "WORKER_POSTGRES__REQUIRE_DURABLE" in message
    assert gauge.values == [False]


def test_required_durability_accepts_a_durable_server_quietly(caplog: pytest.LogCaptureFixture) -> None:
    gauge = Gauge()
    gate = DurabilityGate(lambda: Durability(DURABLE), required=True, report=gauge)
    with caplog.at_level(logging.INFO, logger="worker.health"):
        gate.start()
    assert gauge.values == [True] and gate.check() == (True, "durable (fsync=on, synchronous_commit=on, "
                                                             "full_page_writes=on)")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_unreachable_server_is_checked_again_later_unless_durability_is_required() -> None:
    answers: list[Durability | Exception] = [ConnectionError("refused"), Durability(TEST_STACK)]

    def read() -> Durability:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    gauge = Gauge()
    gate = DurabilityGate(read, required=False, report=gauge, retry_s=0)
    gate.start()
    assert gauge.values == []
    ok, detail = gate.check()
    assert ok and "NOT durable" in detail and gauge.values == [False]

    def unreachable() -> Durability:
        raise ConnectionError("refused")

    slept: list[float] = []
    with pytest.raises(DatabaseNotDurable, match="cannot check"):
        DurabilityGate(unreachable, required=True, report=gauge, wait_s=5, sleep=slept.append).start()
    assert slept and sum(slept[:-1]) < 5 <= sum(slept), "waited out with backoff, up to the bound"


def test_required_durability_waits_out_a_server_in_recovery() -> None:
    answers: list[Durability | Exception] = [ConnectionError("the database system is starting up")] * 3
    answers.append(Durability(DURABLE))

    def read() -> Durability:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    gauge, slept = Gauge(), []
    DurabilityGate(read, required=True, report=gauge, sleep=slept.append).start()
    assert gauge.values == [True] and slept == [0.5, 1.0, 2.0]
