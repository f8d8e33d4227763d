"""What every long-running role shares: graceful stop on SIGTERM/SIGINT, idle detection, transient retries."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from worker.adapters.kafka.dlq import DeadLetterTopicUnusable
from worker.adapters.kafka.producer import TopicUnusable
from worker.adapters.salesforce.schemas import SchemaRegistryRefused
from worker.config import RetrySettings, backoff
from worker.roles.failures import Kind, classify

log = logging.getLogger("worker.runtime")
T = TypeVar("T")


class Stopper:
    """Set by SIGTERM/SIGINT (or by the code); loops finish their batch, commit, close, exit 0."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        log.info("received %s: finishing the current batch, then stopping", signal.Signals(signum).name)
        self._event.set()

    def stop(self) -> None:
        self._event.set()

    @property
    def stopping(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


class StopRequested(Exception):
    """Raised out of a retry wait when a stop was requested: leave without committing."""


class IdleClock:
    """`--exit-when-idle SECONDS`: true once nothing happened for that long."""

    def __init__(self, seconds: float | None, after: Callable[[], bool] | None = None) -> None:
        self._limit = seconds
        self._after = after  # in `run all`: a downstream role waits until its upstream has stopped
        self._last = time.monotonic()

    def busy(self) -> None:
        self._last = time.monotonic()

    def expired(self) -> bool:
        if self._limit is None or (self._after is not None and not self._after()):
            return False
        return time.monotonic() - self._last >= self._limit


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class RoleControl:
    """What runs a role's loop: its stop signal, idle clock and retry policy, and the hooks that report it alive
    (``heartbeat``) and count its retries (``on_retry``)."""

    stopper: Stopper
    idle: IdleClock
    retry: RetrySettings
    heartbeat: Callable[[], None] = _nothing
    on_retry: Callable[[BaseException, int], None] | None = None

    def retried(self, error: BaseException, attempt: int) -> None:
        self.heartbeat()  # waiting out an outage is alive
        if self.on_retry:
            self.on_retry(error, attempt)


# Failures no retry and no code change fixes: a setting, a topic or a permission. One line says what to do.
OPERATOR_ERRORS: tuple[type[BaseException], ...] = (DeadLetterTopicUnusable, SchemaRegistryRefused, TopicUnusable)


def stopped_by(role: str, error: BaseException, where: str) -> int:
    """Log why ``role`` stops on ``error`` (neither transient nor poison) and return the exit code, 1."""
    if isinstance(error, OPERATOR_ERRORS):
        log.error("%s: stopping at %s: %s", role, where, error)
    else:
        log.exception("%s: unclassified failure at %s; stopping without committing past it", role, where,
                      exc_info=error)
    return 1


def retry_transient(
    work: Callable[[], T],
    retry: RetrySettings,
    stopper: Stopper,
    *,
    what: str,
    wait: Callable[[float], None] | None = None,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """Run ``work`` until it succeeds, retrying transient failures with exponential backoff and jitter, never
    giving up (a transient fault is never skipped); poison and bugs propagate at once. ``wait`` sleeps while
    keeping a consumer alive (its partitions paused)."""

    def sleep(seconds: float) -> None:
        if stopper.stopping:
            raise StopRequested(what)
        (wait or stopper.wait)(seconds)
        if stopper.stopping:
            raise StopRequested(what)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("%s: transient failure (attempt %d), retrying: %s", what, state.attempt_number, error)
        if on_retry and error is not None:
            on_retry(error, state.attempt_number)

    retrying = Retrying(
        retry=retry_if_exception(lambda exc: classify(exc) is Kind.TRANSIENT),
        wait=backoff(retry),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(work)
