"""The Salesforce REST gateway: raw Account records and event schemas.

simple-salesforce logs in (password, client credentials, JWT) and formats SOQL; the calls themselves go through
one `requests` session so that retries (tenacity: transient failures only, capped, exponential backoff with
jitter), the circuit breaker (pybreaker) and session refreshes (bounded: simple-salesforce's own refresh on 401
does not cap its retries) are ours. No network in `__init__`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pybreaker
import requests
from simple_salesforce import SalesforceLogin, format_soql  # type: ignore[attr-defined]
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from worker.adapters.salesforce.api_errors import (
    CircuitOpen,
    SalesforceAuthError,
    SalesforceError,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from worker.config import RetrySettings, SalesforceSettings, backoff

log = logging.getLogger("worker.salesforce")

DEFAULT_FIELDS = (
    "Id", "IsDeleted", "Name", "Type", "Industry", "Phone", "Website", "BillingStreet", "BillingCity",
    "BillingState", "BillingPostalCode", "BillingCountry", "BillingLatitude", "BillingLongitude",
    "BillingGeocodeAccuracy", "OwnerId", "AnnualRevenue", "NumberOfEmployees", "Rating", "AccountSource",
    "ParentId", "LastModifiedDate",
)
Login = Callable[[requests.Session], tuple[str, str]]  # -> (session id, instance base URL)


@dataclass
class ApiStats:
    requests: int = 0
    retries: int = 0
    refreshes: int = 0


class SalesforceApi:
    def __init__(
        self,
        settings: SalesforceSettings,
        retry: RetrySettings,
        *,
        fields: Sequence[str] = DEFAULT_FIELDS,
        login: Login | None = None,
        session: requests.Session | None = None,
        on_call: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self._on_call = on_call  # (kind of call, outcome, seconds): metrics
        self._settings = settings
        self._retry = retry
        self._fields = tuple(fields)
        self._login = login or _login_for(settings)
        self._session = session or requests.Session()
        self._auth: tuple[str, str] | None = None
        self.stats = ApiStats()
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=retry.breaker_fail_max,
            reset_timeout=retry.breaker_reset_timeout_s,
            exclude=[lambda exc: not getattr(exc, "transient", False)],
        )

    @property
    def circuit_state(self) -> str:
        return {"closed": "closed", "open": "open", "half-open": "half-open"}[self._breaker.current_state]

    # -- the calls ---------------------------------------------------------------------------------------------

    def fetch_account(self, record_id: str) -> dict[str, Any] | None:
        """One Account; None when Salesforce answers 404 (deleted or never existed)."""
        record: dict[str, Any] | None = self._call("GET", f"sobjects/Account/{record_id}")
        return record

    def fetch_accounts(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Accounts by id, in SOQL batches; ids Salesforce does not return are absent."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), self._settings.batch_size):
            chunk = list(ids[start : start + self._settings.batch_size])
            soql = format_soql(f"SELECT {', '.join(self._fields)} FROM Account WHERE Id IN {{ids}}", ids=chunk)
            for record in self._query(soql, include_deleted=False):
                found[str(record["Id"])] = record
        return found

    def iter_all_accounts(self) -> Iterator[dict[str, Any]]:
        """Every Account, deleted ones included (queryAll), page by page."""
        yield from self._query(f"SELECT {', '.join(self._fields)} FROM Account", include_deleted=True)

    def fetch_event_schema(self, schema_id: str) -> str:
        import json

        schema = self._call("GET", f"event/eventSchema/{schema_id}", params={"payloadFormat": "EXPANDED"})
        if schema is None:
            from worker.adapters.salesforce.errors import UnknownSchema

            raise UnknownSchema(f"Salesforce has no event schema {schema_id!r}")
        return json.dumps(schema)

    def _query(self, soql: str, include_deleted: bool) -> Iterator[dict[str, Any]]:
        page = self._call("GET", "queryAll" if include_deleted else "query", params={"q": soql})
        while page:
            for record in page.get("records", []):
                yield {k: v for k, v in record.items() if k != "attributes"}
            next_url = page.get("nextRecordsUrl")
            page = self._call("GET", next_url) if next_url and not page.get("done", True) else None

    # -- resilience --------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return self._breaker.call(self._with_retries, method, path, params)
        except pybreaker.CircuitBreakerError:
            raise CircuitOpen("Salesforce circuit is open; not calling until the reset timeout passes") from None

    def _with_retries(self, method: str, path: str, params: dict[str, Any] | None) -> Any:
        def count(_state: Any) -> None:
            self.stats.retries += 1

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: getattr(exc, "transient", False)),
            stop=stop_after_attempt(self._retry.max_attempts),
            wait=backoff(self._retry),
            before_sleep=count,
            reraise=True,
        )
        return retrying(self._once, method, path, params)

    def _once(self, method: str, path: str, params: dict[str, Any] | None) -> Any:
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
                response = self._session.request(method, url, params=params, headers=headers,
                                                 timeout=self._settings.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._report(path, "unreachable", started)
                raise SalesforceUnavailable(f"{type(exc).__name__} calling {path}") from exc
            self._report(path, _outcome(response.status_code), started)
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
            return response.json()

    def _report(self, path: str, outcome: str, started: float) -> None:
        if self._on_call is not None:
            self._on_call(_kind_of(path), outcome, time.monotonic() - started)

    def _credentials(self) -> tuple[str, str]:
        if self._auth is None:
            try:
                session_id, base = self._login(self._session)
            except SalesforceError:
                raise
            except requests.RequestException as exc:
                raise SalesforceUnavailable(f"login failed: {exc}") from exc
            except Exception as exc:  # simple-salesforce raises its own types for refused logins
                raise SalesforceAuthError(f"login refused: {exc}") from exc
            self._auth = (session_id, base.rstrip("/"))
        return self._auth


def _kind_of(path: str) -> str:
    """A low-cardinality name of the call for metrics: sobjects, query, queryAll, eventSchema..."""
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


def _login_for(settings: SalesforceSettings) -> Login:
    """simple-salesforce's SalesforceLogin for the configured auth mode; `session` uses the given id + URL."""

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    def login(session: requests.Session) -> tuple[str, str]:
        mode = settings.auth.value
        if mode == "session":
            if not (settings.session_id and settings.instance_url):
                raise SalesforceAuthError("auth=session needs WORKER_SALESFORCE__SESSION_ID and __INSTANCE_URL")
            return secret(settings.session_id) or "", settings.instance_url
        kwargs: dict[str, Any] = {"session": session, "domain": settings.domain, "sf_version": settings.api_version}
        if mode == "password":
            kwargs.update(username=settings.username, password=secret(settings.password),
                          security_token=secret(settings.security_token) or "")
        elif mode == "client_credentials":
            kwargs.update(consumer_key=settings.consumer_key, consumer_secret=secret(settings.consumer_secret))
        elif mode == "jwt":
            kwargs.update(username=settings.username, consumer_key=settings.consumer_key,
                          privatekey_file=settings.private_key_file)
        else:
            raise SalesforceAuthError(f"no Salesforce auth configured (WORKER_SALESFORCE__AUTH={mode})")
        session_id, instance = SalesforceLogin(**kwargs)
        return session_id, f"https://{instance}"

    return login
