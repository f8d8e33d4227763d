"""SalesforceClientSource (the ClientSource port) over real sockets against the fake org: the fields it reads,
deleted and merged records, Bulk 2.0 scans (CSV typing, resuming from a locator), usage, budget, sessions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import wait_for
from tests.fakes.salesforce_server import FakeSalesforce
from worker.adapters.salesforce.api import SalesforceApi
from worker.adapters.salesforce.gateway import SalesforceClientSource
from worker.adapters.salesforce.mapping import FieldMapping
from worker.application.errors import SourceAuthFailed, SourceRefused, SourceUnavailable
from worker.application.ports import FetchedClient, ScanPage
from worker.config import RetrySettings, SalesforceSettings

A, B, C, GONE = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA", "001000000000404AAA"


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(custom_fields={"Active__c": "picklist", "Region__c": "string"}) as server:
        server.add(A, Name="Acme", Active__c="Yes", Description="Anvils", Region__c="EMEA", BillingCity="Paris",
                   NumberOfEmployees=12, AnnualRevenue=1500.5)
        server.add(B, Name="Globex", Active__c="No")
        server.add(C, Name="Initech", deleted=True)
        yield server


def token_login(fake: FakeSalesforce, logins: list[str]) -> Any:
    """Client credentials against the fake's OAuth endpoint, as simple-salesforce would do it."""

    def login(session: requests.Session) -> tuple[str, str]:
        logins.append("login")
        answer = session.post(f"{fake.url}/services/oauth2/token", data={"grant_type": "client_credentials"},
                              timeout=5)
        if answer.status_code != 200:
            raise RuntimeError(answer.json()["error_description"])
        return answer.json()["access_token"], answer.json()["instance_url"]

    return login


def source_for(fake: FakeSalesforce, logins: list[str] | None = None, **settings: Any) -> SalesforceClientSource:
    config = SalesforceSettings(auth="client_credentials", **{"bulk_page_size": 2, **settings})
    retry = RetrySettings(initial_backoff_s=0.01, max_backoff_s=0.02, max_attempts=2)
    api = SalesforceApi(config, retry, login=token_login(fake, logins if logins is not None else []))
    return SalesforceClientSource(api, FieldMapping.from_overrides())


def next_page(source: SalesforceClientSource, scan_id: str, cursor: str | None) -> ScanPage:
    page = wait_for(lambda: source.scan_page(scan_id, cursor), timeout_s=10, what="a scan page")
    assert page is not None
    return page


def scan_all(source: SalesforceClientSource, scan_id: str, cursor: str | None = None) -> list[FetchedClient]:
    clients: list[FetchedClient] = []
    while True:
        page = next_page(source, scan_id, cursor)
        clients += page.clients
        if page.cursor is None:
            return clients
        cursor = page.cursor


def test_a_resync_reads_every_mapped_field_and_the_extras_seen(fake: FakeSalesforce) -> None:
    fetched = source_for(fake).fetch_clients([A], extra_fields={"Description", "Region__c"})[A]
    assert fetched.data is not None and not fetched.deleted
    assert (fetched.data.name, fetched.data.active, fetched.data.billing_address.city) == ("Acme", "Yes", "Paris")
    assert fetched.data.extra == {"Description": "Anvils", "Region__c": "EMEA"}
    assert {"name", "active", "billing_address.city", "extra.Description", "extra.Region__c"} <= fetched.fetched
    assert fetched.last_modified_ms == 1795514400000  # SystemModstamp 2026-11-24T10:00:00.000+0000


def test_a_mapped_field_the_org_lacks_is_left_out_not_an_invalid_field() -> None:
    with FakeSalesforce() as bare:  # no Active__c in this org
        bare.add(A, Name="Acme")
        source = source_for(bare)
        fetched = source.fetch_clients([A], extra_fields={"Gone__c"})[A]
        assert fetched.data is not None and fetched.data.name == "Acme"
        assert "active" not in fetched.fetched and "extra.Gone__c" not in fetched.fetched
        assert "Active__c" not in source.fields({"Gone__c"})


def test_deleted_merged_and_unknown_ids_come_back_deleted_with_the_master(fake: FakeSalesforce) -> None:
    fake.merge(A, B)
    found = source_for(fake).fetch_clients([A, B, C, GONE, "not-an-id"])
    assert found[A].data is not None and found[A].merged_into is None
    assert (found[B].deleted, found[B].data, found[B].merged_into) == (True, None, A)
    assert (found[C].deleted, found[C].merged_into) == (True, None) and found[C].last_modified_ms is not None
    assert (found[GONE].deleted, found[GONE].last_modified_ms) == (True, None)
    assert found["not-an-id"].deleted
    assert fake.count("composite") == 1 and fake.count("queryAll") == 1


def test_more_ids_than_one_collection_call_takes_are_chunked(fake: FakeSalesforce) -> None:
    ids = fake.generate(2500)
    found = source_for(fake).fetch_clients(ids)
    assert len(found) == 2500 and not any(f.deleted for f in found.values())
    assert fake.count("composite") == 2 and fake.count("queryAll") == 0


def test_an_invalid_field_surfaces_as_source_refused_with_its_code(fake: FakeSalesforce) -> None:
    source = source_for(fake)
    source.fetch_clients([A], extra_fields={"Region__c"})
    del fake.store.describe.types["Region__c"]  # deleted in the org since our describe was read
    fake.store.describe._by_lower.pop("region__c")
    with pytest.raises(SourceRefused) as refused:
        source.fetch_clients([A], extra_fields={"Region__c"})
    assert refused.value.code == "INVALID_FIELD"


def test_a_scan_reads_every_account_in_bulk_typed_from_csv(fake: FakeSalesforce) -> None:
    source = source_for(fake)
    scan_id = source.start_scan(extra_fields={"Region__c"})
    assert source.scan_page(scan_id, None) is None  # the job is still in progress
    clients = {c.client_id: c for c in scan_all(source, scan_id)}
    assert sorted(clients) == [A, B, C]
    acme = clients[A].data
    assert acme is not None and (acme.employees, acme.annual_revenue, acme.active) == (12, 1500.5, "Yes")
    assert acme.phone is None and acme.extra == {"Region__c": "EMEA"}
    assert clients[A].last_modified_ms == 1795514400000 and "extra.Region__c" in clients[A].fetched
    assert clients[C].deleted and clients[C].data is None


def test_a_scan_resumes_from_a_stored_locator_in_another_process(fake: FakeSalesforce) -> None:
    fake.generate(5)
    first = source_for(fake)
    scan_id = first.start_scan()
    page = next_page(first, scan_id, None)
    assert len(page.clients) == 2 and page.cursor is not None
    rest = scan_all(source_for(fake), scan_id, page.cursor)  # a new source: only the scan id and locator kept
    ids = [c.client_id for c in page.clients + rest]
    assert len(ids) == 8 == len(set(ids))


def test_a_failed_bulk_job_is_refused(fake: FakeSalesforce) -> None:
    fake.fail_next_job("InternalServerError: query timed out")
    source = source_for(fake)
    scan_id = source.start_scan()
    with pytest.raises(SourceRefused, match="query timed out"):
        wait_for(lambda: source.scan_page(scan_id, None), timeout_s=10, what="the job to end")


def test_person_accounts_name_comes_from_its_parts() -> None:
    with FakeSalesforce(person_accounts=True) as org:
        org.add(A, Name="Ada Lovelace", FirstName="Ada", LastName="Lovelace", IsPersonAccount=True)
        org.add(B, Name="Globex", IsPersonAccount=False)
        found = source_for(org).fetch_clients([A, B])
    ada, globex = found[A].data, found[B].data
    assert ada is not None and ada.name == "Ada Lovelace"
    assert ada.extra["PersonName"] == {"FirstName": "Ada", "LastName": "Lovelace"}
    assert globex is not None and globex.name == "Globex" and "PersonName" not in globex.extra
    assert "extra.PersonName" in found[B].fetched


def test_usage_is_reported_and_past_our_budget_share_we_back_off_without_calling() -> None:
    with FakeSalesforce(daily_limit=10) as org:
        org.add(A, Name="Acme")
        source = source_for(org, api_budget_share=0.5)
        assert source.usage() is None
        source.fetch_clients([A])  # describe + collection
        assert source.usage() is not None and source.usage().used == 2  # type: ignore[union-attr]
        org.api_used = 5  # others used the org meanwhile
        source.fetch_clients([A])
        calls = len(org.requests)
        with pytest.raises(SourceUnavailable, match="budget"):
            source.fetch_clients([A])
        assert len(org.requests) == calls


def test_an_exhausted_daily_limit_is_transient() -> None:
    with FakeSalesforce(daily_limit=100) as org:
        org.add(A, Name="Acme")
        org.exceed_limit()  # by other clients, before we read any usage
        with pytest.raises(SourceUnavailable, match="REQUEST_LIMIT_EXCEEDED"):
            source_for(org).fetch_clients([A])


def test_a_session_expiring_mid_scan_is_refreshed_and_a_refused_login_fails_auth(fake: FakeSalesforce) -> None:
    logins: list[str] = []
    source = source_for(fake, logins)
    scan_id = source.start_scan()
    fake.expire_session()
    assert len(scan_all(source, scan_id)) == 3 and logins == ["login", "login"]
    fake.expire_session()
    fake.refuse_logins()
    with pytest.raises(SourceAuthFailed):
        source.fetch_clients([A])
