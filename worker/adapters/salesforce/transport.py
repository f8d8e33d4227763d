"""One resilient channel to Salesforce's REST API: retries (tenacity: transient failures only, capped,
exponential backoff with jitter), the circuit breaker (pybreaker), bounded session refreshes (simple-salesforce's
own refresh on 401 does not cap its retries), the API usage of every answer (Sforce-Limit-Info) and our share
of the daily budget. No network in `__init__`."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybreaker
import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from worker.adapters.salesforce.api_errors import (
    CircuitOpen,
    SalesforceAuthError,
    SalesforceError,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from worker.adapters.salesforce.login import Login
from worker.config import RetrySettings, SalesforceSettings, backoff

log = logging.getLogger("worker.salesforce")
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


@dataclass
class ApiStats:
    requests: int = 0
    retries: int = 0
    refreshes: int = 0


@dataclass(frozen=True)
class Usage:
    used: int
    limit: int
    read_at: float  # time.monotonic() of the answer that reported it


class SalesforceTransport:
    def __init__(self, settings: SalesforceSettings, retry: RetrySettings, login: Login,
                 session: requests.Session, on_call: Callable[[str, str, float], None] | None = None) -> None:
        self._settings, self._retry, self._login, self.session = settings, retry, login, session
        self._on_call = on_call  # (kind of call, outcome, seconds): metrics
        self._auth: tuple[str, str] | None = None
        self.stats = ApiStats()
        self.usage: Usage | None = None
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=retry.breaker_fail_max,
            reset_timeout=retry.breaker_reset_timeout_s,
            exclude=[lambda exc: not getattr(exc, "transient", False)],
        )

    @property
    def circuit_state(self) -> str:
        return {"closed": "closed", "open": "open", "half-open": "half-open"}[self._breaker.current_state]

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
             raw: bool = False) -> Any:
        """The parsed JSON answer (the response itself with ``raw``); None for a 404."""
        self._check_budget()
        try:
            return self._breaker.call(self._with_retries, method, path, params, body, raw)
        except pybreaker.CircuitBreakerError:
            raise CircuitOpen("Salesforce circuit is open; not calling until the reset timeout passes") from None

    def _check_budget(self) -> None:
        """Past our share of the daily requests, back off without calling; a stale reading lets one call through
        to learn whether the rolling 24 hours freed some."""
        usage, share = self.usage, self._settings.api_budget_share
        if usage is None or usage.limit <= 0 or usage.used < usage.limit * share:
            return
        if time.monotonic() - usage.read_at >= self._settings.api_budget_recheck_s:
            return
        raise SalesforceUnavailable(
            f"API budget share reached: {usage.used}/{usage.limit} daily requests used, our share is {share:.0%}")

    def _with_retries(self, method: str, path: str, params: dict[str, Any] | None, body: Any, raw: bool) -> Any:
        def count(_state: Any) -> None:
            self.stats.retries += 1

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: getattr(exc, "transient", False)),
            stop=stop_after_attempt(self._retry.max_attempts),
            wait=backoff(self._retry),
            before_sleep=count,
            reraise=True,
        )
        return retrying(self._once, method, path, params, body, raw)

    def _once(self, method: str, path: str, params: dict[str, Any] | None, body: Any, raw: bool) -> Any:
        refreshes = 0
        while True:
            session_id, base = self._credentials()
            url = base + path if path.startswith("/") else f"{base}/services/data/v{self._settings.api_version}/{path}"
            headers = {"Authorization": f"Bearer {session_id}", "Accept": "application/json"}
            if self._settings.own_client_id:
                headers["Sforce-Call-Options"] = f"client={self._settings.own_client_id}"
            self.stats.requests += 1
            started = time.monotonic()
            try:
                response = self.session.request(method, url, params=params, json=body, headers=headers,
                                                timeout=self._settings.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._report(path, "unreachable", started)
                raise SalesforceUnavailable(f"{type(exc).__name__} calling {path}") from exc
            self._report(path, _outcome(response.status_code), started)
            self._read_usage(response)
            code, message = _error_of(response)
            if response.status_code == 401 and code in ("INVALID_SESSION_ID", ""):
                if refreshes >= self._settings.max_session_refreshes:
                    raise SalesforceAuthError(f"session invalid after {refreshes} refresh(es): {message}")
                refreshes += 1
                self.stats.refreshes += 1
                self._auth = None
                continue
            if response.status_code == 404:
                return None
            if response.status_code == 429 or response.status_code >= 500 or code == "REQUEST_LIMIT_EXCEEDED":
                raise SalesforceUnavailable(f"HTTP {response.status_code} {code}: {message}")
            if response.status_code >= 300:
                raise SalesforceRequestError(response.status_code, code, message)
            if raw:
                return response
            return response.json() if response.content else None

    def _read_usage(self, response: requests.Response) -> None:
        match = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.usage = Usage(int(match[1]), int(match[2]), time.monotonic())

    def _report(self, path: str, outcome: str, started: float) -> None:
        if self._on_call is not None:
            self._on_call(_kind_of(path), outcome, time.monotonic() - started)

    def _credentials(self) -> tuple[str, str]:
        if self._auth is None:
            try:
                session_id, base = self._login(self.session)
            except SalesforceError:
                raise
            except requests.RequestException as exc:
                raise SalesforceUnavailable(f"login failed: {exc}") from exc
            except Exception as exc:  # simple-salesforce raises its own types for refused logins
                raise SalesforceAuthError(f"login refused: {exc}") from exc
            self._auth = (session_id, base.rstrip("/"))
        return self._auth


def _kind_of(path: str) -> str:
    """A low-cardinality name of the call for metrics: sobjects, query, queryAll, composite, jobs, eventSchema..."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if "data" in parts:  # an absolute /services/data/vNN/<kind>/... path (a next page)
        parts = parts[parts.index("data") + 2:]
    if parts[:2] == ["event", "eventSchema"]:
        return "eventSchema"
    return parts[0] if parts else "unknown"


def _outcome(status: int) -> str:
    if status < 300:
        return "ok"
    if status == 404:
        return "not_found"
    if status == 401:
        return "unauthorized"
    if status == 429 or status >= 500:
        return "unavailable"
    return "error"


def _error_of(response: requests.Response) -> tuple[str, str]:
    if response.status_code < 300:
        return "", ""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    first = body[0] if isinstance(body, list) and body else body
    if isinstance(first, dict):
        return str(first.get("errorCode") or first.get("error") or ""), str(first.get("message") or "")[:300]
    return "", str(body)[:300]
