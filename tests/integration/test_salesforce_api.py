"""The Salesforce gateway over real sockets against a local fake of the REST API: retries only for transient
failures, a capped, bounded session refresh, and a circuit breaker that opens, half-opens and closes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import wait_for
from tests.fakes.salesforce_server import FakeSalesforce
from worker.adapters.salesforce.api import SalesforceApi
from worker.adapters.salesforce.api_errors import (
    CircuitOpen,
    SalesforceAuthError,
    SalesforceRequestError,
    SalesforceUnavailable,
)
from worker.config import RetrySettings, SalesforceSettings

A, B, C = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(page_size=2) as server:  # small pages, to page through three records
        server.add(A, Name="Acme", BillingCity="Paris")
        server.add(B, Name="Globex")
        server.add(C, Name="Initech", deleted=True)
        yield server


def api_for(fake: FakeSalesforce, *, batch_size: int = 200, attempts: int = 3, fail_max: int = 5,
            reset_s: float = 30.0, timeout_s: float = 2.0, refreshes: int = 1, logins: list[str] | None = None,
            own_client_id: str | None = None) -> SalesforceApi:
    settings = SalesforceSettings(auth="session", batch_size=batch_size, timeout_s=timeout_s,
                                  max_session_refreshes=refreshes, own_client_id=own_client_id)
    retry = RetrySettings(initial_backoff_s=0.01, max_backoff_s=0.02, max_attempts=attempts,
                          breaker_fail_max=fail_max, breaker_reset_timeout_s=reset_s)

    def login(_session: requests.Session) -> tuple[str, str]:
        if logins is not None:
            logins.append("login")
        return "token", fake.url

    return SalesforceApi(settings, retry, login=login)


def test_one_account_is_fetched_and_a_404_means_deleted_without_a_retry(fake: FakeSalesforce) -> None:
    api = api_for(fake)
    assert api.fetch_account(A)["Name"] == "Acme"  # type: ignore[index]
    assert api.fetch_account(C) is None
    assert fake.count("sobjects") == 2 and api.stats.retries == 0


def test_many_accounts_are_fetched_in_soql_batches_across_pages(fake: FakeSalesforce) -> None:
    for n in range(4, 9):
        fake.add(f"00100000000000{n}AAA", Name=f"Client {n}")
    ids = [f"00100000000000{n}AAA" for n in range(4, 9)]
    found = api_for(fake, batch_size=2).fetch_accounts(ids)
    assert sorted(found) == ids
    assert fake.count("query") == 3  # 5 ids in batches of 2
    assert all("attributes" not in record for record in found.values())


def test_iterating_all_accounts_includes_the_deleted_ones_across_pages(fake: FakeSalesforce) -> None:
    records = list(api_for(fake).iter_all_accounts())
    assert sorted(r["Id"] for r in records) == [A, B, C]
    assert fake.count("queryAll") == 1 and fake.count("queryMore") == 1
    assert [r["IsDeleted"] for r in records if r["Id"] == C] == [True]


def test_a_503_twice_then_success_is_retried_twice(fake: FakeSalesforce) -> None:
    fake.fail_next("sobjects", 503, times=2)
    api = api_for(fake)
    assert api.fetch_account(A) is not None
    assert fake.count("sobjects") == 3 and api.stats.retries == 2


def test_request_limit_exceeded_is_retried(fake: FakeSalesforce) -> None:
    fake.fail_next("query", 403, body=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "limit"}])
    fake.fail_next("query", 429)
    api = api_for(fake)
    assert set(api.fetch_accounts([A, B])) == {A, B}
    assert api.stats.retries == 2


def test_a_400_is_not_retried(fake: FakeSalesforce) -> None:
    fake.fail_next("query", 400, body=[{"errorCode": "MALFORMED_QUERY", "message": "bad"}])
    api = api_for(fake)
    with pytest.raises(SalesforceRequestError, match="MALFORMED_QUERY"):
        api.fetch_accounts([A])
    assert fake.count("query") == 1 and api.stats.retries == 0


def test_a_slow_answer_times_out_is_retried_then_reported_unavailable(fake: FakeSalesforce) -> None:
    fake.fail_next("sobjects", 200, times=3, body={}, delay_s=1.0)
    api = api_for(fake, timeout_s=0.2, attempts=3)
    with pytest.raises(SalesforceUnavailable):
        api.fetch_account(A)
    assert api.stats.retries == 2 and api.stats.requests == 3


def test_an_expired_session_is_refreshed_once_then_the_call_succeeds(fake: FakeSalesforce) -> None:
    fake.fail_next("sobjects", 401, body=[{"errorCode": "INVALID_SESSION_ID", "message": "expired"}])
    logins: list[str] = []
    api = api_for(fake, logins=logins)
    assert api.fetch_account(A) is not None
    assert logins == ["login", "login"] and api.stats.refreshes == 1


def test_a_session_that_stays_invalid_is_refreshed_a_bounded_number_of_times(fake: FakeSalesforce) -> None:
    fake.fail_next("sobjects", 401, times=10, body=[{"errorCode": "INVALID_SESSION_ID", "message": "no"}])
    api = api_for(fake, refreshes=2)
    with pytest.raises(SalesforceAuthError):
        api.fetch_account(A)
    assert fake.count("sobjects") == 3  # the first try and two refreshed ones, no more


def test_the_circuit_opens_fails_fast_half_opens_and_closes(fake: FakeSalesforce) -> None:
    api = api_for(fake, attempts=1, fail_max=2, reset_s=0.3)
    fake.down()
    for _ in range(2):
        with pytest.raises(SalesforceUnavailable):
            api.fetch_account(A)
    assert api.circuit_state == "open"
    calls = len(fake.requests)
    with pytest.raises(CircuitOpen):
        api.fetch_account(A)
    assert len(fake.requests) == calls  # failed fast, Salesforce not called
    fake.up()

    def closes() -> bool:
        try:
            return api.fetch_account(A) is not None
        except CircuitOpen:
            return False

    wait_for(closes, timeout_s=10, what="the circuit to half-open and close")
    assert api.circuit_state == "closed"


def test_a_404_does_not_count_toward_opening_the_circuit(fake: FakeSalesforce) -> None:
    api = api_for(fake, fail_max=1)
    for _ in range(3):
        assert api.fetch_account(C) is None
    assert api.circuit_state == "closed"


def test_the_event_schema_is_fetched_and_our_client_id_labels_the_calls(fake: FakeSalesforce) -> None:
    fake.schemas["abc"] = {"type": "record", "name": "AccountChangeEvent", "fields": []}
    api = api_for(fake, own_client_id="cdc-worker")
    assert '"AccountChangeEvent"' in api.fetch_event_schema("abc")
    seen: dict[str, str] = {}
    original = api._session.request

    def spy(*args: object, **kwargs: object) -> requests.Response:
        seen.update(kwargs["headers"])  # type: ignore[arg-type]
        return original(*args, **kwargs)  # type: ignore[arg-type]

    api._session.request = spy  # type: ignore[method-assign]
    api.fetch_account(A)
    assert seen["Sforce-Call-Options"] == "client=cdc-worker"
