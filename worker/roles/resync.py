"""The resync role: a loop of Resynchronizer steps, on its own (no consumer to keep alive, so a full resync of a
million Accounts never holds ingest back). Salesforce being unavailable only makes it wait with backoff;
refused credentials keep it up and not ready, with one error line per backoff step; a bug stops it non-zero."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.application.errors import SourceAuthFailed
from worker.application.resync import Resynchronizer, StepReport
from worker.roles.failures import Kind, classify
from worker.roles.runtime import IdleClock, Stopper

log = logging.getLogger("worker.resync")


@dataclass(frozen=True)
class ResyncPacing:
    poll_interval_s: float = 1.0  # an empty queue is looked at again after this
    scan_poll_s: float = 2.0  # a query job still being prepared is polled again after this
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 30.0
    status_every_s: float = 5.0


@dataclass
class ResyncHooks:
    heartbeat: Callable[[], None] = lambda: None
    on_step: Callable[[StepReport], None] = lambda _report: None
    status: Callable[[], Any] | None = None  # the queue's status, read every `status_every_s` (metrics)
    on_status: Callable[[Any], None] = lambda _status: None
    usage: Callable[[], Any] = lambda: None
    on_usage: Callable[[Any], None] = lambda _usage: None


class ResyncRole:
    def __init__(self, resync: Resynchronizer, stopper: Stopper, idle: IdleClock,
                 pacing: ResyncPacing | None = None, hooks: ResyncHooks | None = None) -> None:
        self._resync = resync
        self._stopper = stopper
        self._idle = idle
        self._pacing = pacing or ResyncPacing()
        self._hooks = hooks or ResyncHooks()
        self._failures = 0
        self._status_at = -1e18
        self.auth_error: str | None = None  # readiness: set while Salesforce refuses our credentials

    def ready(self) -> tuple[bool, str]:
        if self.auth_error:
            return False, f"Salesforce refused the credentials: {self.auth_error}"
        return True, "reading Salesforce"

    def run(self) -> int:
        log.info("resync: started")
        while not self._stopper.stopping:
            self._hooks.heartbeat()
            self._report_status()
            try:
                report = self._resync.step()
            except SourceAuthFailed as exc:
                self.auth_error = str(exc)
                delay = self._backoff()
                log.error("resync: Salesforce refused the credentials (%s); next try in %.0fs", exc, delay)
                self._stopper.wait(delay)
                continue
            except Exception as exc:
                if classify(exc) is not Kind.TRANSIENT:
                    log.exception("resync: unclassified failure; stopping")
                    return 1
                delay = self._backoff()
                log.warning("resync: transient failure, next try in %.1fs: %s", delay, exc)
                self._stopper.wait(delay)
                continue
            self._failures, self.auth_error = 0, None
            self._hooks.on_step(report)
            self._hooks.on_usage(self._hooks.usage())
            for error in report.errors:
                log.warning("resync: %s", error)
            if report.worked:
                self._idle.busy()
                continue
            if not report.waiting and self._idle.expired():
                log.info("resync: idle, stopping")
                break
            self._stopper.wait(self._pacing.scan_poll_s if report.waiting else self._pacing.poll_interval_s)
        return 0

    def _backoff(self) -> float:
        self._failures += 1
        p = self._pacing
        return float(min(p.max_backoff_s, p.initial_backoff_s * 2 ** min(self._failures, 16)))

    def _report_status(self) -> None:
        if self._hooks.status is None or time.monotonic() - self._status_at < self._pacing.status_every_s:
            return
        self._status_at = time.monotonic()
        try:
            self._hooks.on_status(self._hooks.status())
        except Exception as exc:  # metrics never stop the role; the step itself reports a broken database
            log.debug("resync: status not read: %s", exc)


class DisabledResync:
    """`run all` without Salesforce credentials: says so once, reports it, and waits for the stop."""

    def __init__(self, why: str, stopper: Stopper, idle: IdleClock,
                 dirty: Callable[[], int] | None = None) -> None:
        self._why = why
        self._stopper = stopper
        self._idle = idle
        self._dirty = dirty

    def ready(self) -> tuple[bool, str]:
        return True, f"disabled: {self._why}"

    def run(self) -> int:
        waiting = ""
        if self._dirty is not None:
            try:
                waiting = f"; {self._dirty()} client(s) wait for a resync"
            except Exception as exc:
                waiting = f"; the backlog could not be read: {exc}"
        log.warning("resync is disabled: %s%s (they keep holding their changes back)", self._why, waiting)
        while not self._stopper.stopping and not self._idle.expired():
            self._stopper.wait(1.0)
        return 0
