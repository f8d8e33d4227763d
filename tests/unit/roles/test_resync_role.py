"""The resync role's loop with a scripted Resynchronizer: waits out what is transient, stays up and unready while
Salesforce refuses the credentials, stops non-zero on a bug, and stops when idle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from worker.application.errors import SourceAuthFailed, SourceUnavailable
from worker.application.resync import StepReport
from worker.roles.resync import ResyncHooks, ResyncPacing, ResyncRole
from worker.roles.runtime import IdleClock, Stopper

FAST = ResyncPacing(poll_interval_s=0.001, scan_poll_s=0.001, initial_backoff_s=0.001, max_backoff_s=0.002)


class Scripted:
    """Each step takes the next item: a StepReport to return or an exception to raise; then idle forever."""

    def __init__(self, script: list[Any], on_step: Any = None) -> None:
        self._script: Iterator[Any] = iter(script)
        self.steps = 0
        self._on_step = on_step

    def step(self) -> StepReport:
        self.steps += 1
        if self._on_step:
            self._on_step(self)
        item = next(self._script, StepReport())
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]


def role_of(script: list[Any], idle_s: float | None = 0.01, **hooks: Any) -> tuple[ResyncRole, Scripted]:
    resync = Scripted(script)
    return ResyncRole(resync, Stopper(), IdleClock(idle_s), FAST, ResyncHooks(**hooks)), resync  # type: ignore[arg-type]


def test_transient_failures_are_waited_out_and_work_goes_on() -> None:
    steps: list[StepReport] = []
    role, resync = role_of([SourceUnavailable("503"), SourceUnavailable("503"), StepReport(resynced=3)],
                           on_step=steps.append)
    assert role.run() == 0
    assert resync.steps >= 3 and steps[0].resynced == 3


def test_refused_credentials_keep_the_role_up_and_unready_until_a_step_succeeds(caplog: pytest.LogCaptureFixture
                                                                              ) -> None:
    seen: list[tuple[bool, str]] = []
    role: ResyncRole

    def watch(resync: Scripted) -> None:
        seen.append(role.ready())

    resync = Scripted([SourceAuthFailed("INVALID_SESSION_ID"), SourceAuthFailed("INVALID_SESSION_ID"),
                       StepReport(resynced=1)], on_step=watch)
    role = ResyncRole(resync, Stopper(), IdleClock(0.01), FAST)  # type: ignore[arg-type]
    assert role.run() == 0
    assert seen[1] == (False, "Salesforce refused the credentials: INVALID_SESSION_ID")
    assert role.ready() == (True, "reading Salesforce")
    errors = [r for r in caplog.records if "refused the credentials" in r.getMessage()]
    assert len(errors) == 2  # one line per backoff step


def test_a_bug_stops_the_role_non_zero() -> None:
    role, _ = role_of([RuntimeError("a bug")])
    assert role.run() == 1


def test_a_query_job_being_prepared_is_not_idleness() -> None:
    role, resync = role_of([StepReport(waiting=True)] * 5, idle_s=0.0)
    assert role.run() == 0
    assert resync.steps == 6  # polled the job five times, then found nothing to do and stopped
