"""The fake of Salesforce answers only what Salesforce would, over real sockets: field selection, error arrays,
query vs queryAll, cursors, Collections limits, Bulk 2.0 states and CSV locators, the usage header, faults."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes.salesforce_server import FakeSalesforce

A, B, C = "001000000000001AAA", "001000000000002AAA", "001000000000003AAA"
V = "/services/data/v62.0"


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce(page_size=2, custom_fields={"Region__c": "string"}) as server:
        server.add(A, Name="Acme", BillingCity="Paris", Region__c="EMEA", NumberOfEmployees=12)
        server.add(B, Name="Globex", AnnualRevenue=1500.5)
        server.add(C, Name="Initech", deleted=True)
        yield server


class Client:
    def __init__(self, fake: FakeSalesforce, token: str = "token") -> None:
        self.fake, self.session = fake, requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        url = self.fake.url + (path if path.startswith("/services") else f"{V}/{path}")
        return self.session.get(url, params=params, timeout=5)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.session.post(f"{self.fake.url}{V}/{path}", json=body, timeout=5)


def test_query_returns_only_the_selected_fields_and_attributes(fake: FakeSalesforce) -> None:
    page = Client(fake).get("query/", q=f"SELECT Id, Name FROM Account WHERE Id IN ('{A}')").json()
    assert page["records"] == [{"attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{A}"},
                                "Id": A, "Name": "Acme"}]
    assert page["done"] is True and page["totalSize"] == 1 and "nextRecordsUrl" not in page


def test_an_unknown_column_is_a_400_with_an_error_array(fake: FakeSalesforce) -> None:
    answer = Client(fake).get("query/", q="SELECT Id, Foo__c FROM Account")
    assert answer.status_code == 400
    [error] = answer.json()
    assert error["errorCode"] == "INVALID_FIELD" and "No such column 'Foo__c'" in error["message"]
    assert Client(fake).get("query/", q="SELEC Id FROM Account").json()[0]["errorCode"] == "MALFORMED_QUERY"


def test_person_account_fields_fail_like_any_unknown_column_unless_enabled(fake: FakeSalesforce) -> None:
    assert Client(fake).get("query/", q="SELECT FirstName FROM Account").status_code == 400
    with FakeSalesforce(person_accounts=True) as people:
        people.add(A, FirstName="Ada", LastName="Lovelace", IsPersonAccount=True)
        [record] = Client(people).get("query/", q="SELECT FirstName, LastName FROM Account").json()["records"]
        assert (record["FirstName"], record["LastName"]) == ("Ada", "Lovelace")


def test_query_hides_deleted_and_merged_records_and_query_all_shows_them(fake: FakeSalesforce) -> None:
    fake.merge(A, B)
    soql = "SELECT Id, IsDeleted, MasterRecordId FROM Account"
    live = Client(fake).get("query/", q=soql).json()["records"]
    assert [r["Id"] for r in live] == [A]
    every = {r["Id"]: r for r in Client(fake).get("queryAll/", q=soql + " WHERE IsDeleted = true").json()["records"]}
    assert set(every) == {B, C} and every[B]["MasterRecordId"] == A and every[C]["MasterRecordId"] is None


def test_pages_follow_a_host_relative_next_records_url(fake: FakeSalesforce) -> None:
    fake.generate(5)
    client = Client(fake)
    page = client.get("queryAll/", q="SELECT Id FROM Account ORDER BY Id").json()
    ids = [r["Id"] for r in page["records"]]
    while not page["done"]:
        assert page["nextRecordsUrl"].startswith(f"{V}/query/01g") and page["totalSize"] == 8
        page = client.get(page["nextRecordsUrl"]).json()
        ids += [r["Id"] for r in page["records"]]
    assert len(ids) == 8 and ids == sorted(ids) and fake.count("queryMore") == 3


def test_fifteen_character_ids_are_matched_case_sensitively_and_come_back_as_eighteen(
    fake: FakeSalesforce,
) -> None:
    fake.add("001000000000Xyz", Name="Mixed case")
    q = "SELECT Id FROM Account WHERE Id IN ('001000000000Xyz', '001000000000xyz')"
    assert [r["Id"] for r in Client(fake).get("query/", q=q).json()["records"]] == ["001000000000XyzAAE"]


def test_datetimes_comparisons_and_the_rest_datetime_form(fake: FakeSalesforce) -> None:
    fake.advance(60)
    fake.update(A, Phone="+1")
    q = "SELECT Id, SystemModstamp FROM Account WHERE SystemModstamp > 2026-11-24T10:00:30Z AND IsDeleted = false"
    [record] = Client(fake).get("query/", q=q).json()["records"]
    assert record == {**record, "Id": A, "SystemModstamp": "2026-11-24T10:01:00.000+0000"}


def test_an_over_long_uri_is_a_414(fake: FakeSalesforce) -> None:
    ids = ", ".join(f"'{A}'" for _ in range(700))
    assert Client(fake).get("query/", q=f"SELECT Id FROM Account WHERE Id IN ({ids})").status_code == 414


def test_collections_retrieve_answers_in_request_order_with_nulls_and_limits(fake: FakeSalesforce) -> None:
    client = Client(fake)
    answer = client.post("composite/sobjects/Account", {"ids": [B, "001000000000404AAA", C, A], "fields": ["Name"]})
    assert [r and r["Name"] for r in answer.json()] == ["Globex", None, None, "Acme"]
    too_many = client.post("composite/sobjects/Account", {"ids": [A] * 2001, "fields": ["Id"]})
    assert too_many.status_code == 400
    unknown = client.post("composite/sobjects/Account", {"ids": [A], "fields": ["Nope__c"]})
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "INVALID_FIELD"


def test_describe_lists_standard_and_custom_fields_with_types(fake: FakeSalesforce) -> None:
    types = {f["name"]: f["type"] for f in Client(fake).get("sobjects/Account/describe").json()["fields"]}
    assert types["Region__c"] == "string" and types["NumberOfEmployees"] == "int"
    assert types["SystemModstamp"] == "datetime" and types["MasterRecordId"] == "reference"
    assert "FirstName" not in types


def test_a_bulk_query_job_completes_as_it_is_polled_and_pages_csv_behind_a_locator(fake: FakeSalesforce) -> None:
    client = Client(fake)
    job = client.post("jobs/query", {"operation": "queryAll",
                                     "query": "SELECT Id, Name, NumberOfEmployees, IsDeleted FROM Account"}).json()
    assert job["state"] == "UploadComplete"
    early = client.get(f"jobs/query/{job['id']}/results")
    assert early.status_code == 412
    states = [client.get(f"jobs/query/{job['id']}").json()["state"] for _ in range(2)]
    assert states == ["InProgress", "JobComplete"]
    first = client.get(f"jobs/query/{job['id']}/results", maxRecords=2)
    assert first.headers["Sforce-NumberOfRecords"] == "2" and first.headers["Sforce-Locator"] not in ("", "null")
    rows = list(csv.DictReader(io.StringIO(first.text)))
    assert first.text.startswith('"Id","Name","NumberOfEmployees","IsDeleted"\n')
    assert rows[0] == {"Id": A, "Name": "Acme", "NumberOfEmployees": "12", "IsDeleted": "false"}
    assert rows[1]["NumberOfEmployees"] == ""
    last = client.get(f"jobs/query/{job['id']}/results", locator=first.headers["Sforce-Locator"], maxRecords=2)
    assert last.headers["Sforce-Locator"] == "null" and last.headers["Sforce-NumberOfRecords"] == "1"
    [row] = csv.DictReader(io.StringIO(last.text))
    assert row["IsDeleted"] == "true"


def test_a_failed_bulk_job_carries_its_error_message(fake: FakeSalesforce) -> None:
    fake.fail_next_job("InternalServerError")
    client = Client(fake)
    job = client.post("jobs/query", {"operation": "query", "query": "SELECT Id FROM Account"}).json()
    states = [client.get(f"jobs/query/{job['id']}").json() for _ in range(2)]
    assert states[-1]["state"] == "Failed" and states[-1]["errorMessage"] == "InternalServerError"


def test_a_hundred_thousand_accounts_are_generated_and_read_in_bulk_quickly() -> None:
    with FakeSalesforce(bulk_polls=0) as fake:
        started = time.monotonic()
        fake.generate(100_000, seed=3)
        client = Client(fake)
        job = client.post("jobs/query", {"operation": "queryAll", "query": "SELECT Id, Name FROM Account"}).json()
        locator, total = None, 0
        while locator != "null":
            params = {"maxRecords": 50_000, **({"locator": locator} if locator else {})}
            page = client.get(f"jobs/query/{job['id']}/results", **params)
            total += int(page.headers["Sforce-NumberOfRecords"])
            locator = page.headers["Sforce-Locator"]
        assert total == 100_000 and time.monotonic() - started < 20


def test_get_updated_and_get_deleted_answer_their_shapes_within_their_windows(fake: FakeSalesforce) -> None:
    fake.advance(120)
    fake.update(A, Phone="+2")
    fake.delete(B)
    fake.advance(60)  # covered up to the current minute: the changes at 10:02 are behind it
    client = Client(fake)
    window = {"start": "2026-11-24T10:01:00+00:00", "end": "2026-11-24T10:05:00+00:00"}
    assert client.get("sobjects/Account/updated/", **window).json() == {
        "ids": [A], "latestDateCovered": "2026-11-24T10:03:00.000+0000"}
    deleted = client.get("sobjects/Account/deleted/", **window).json()
    assert deleted["deletedRecords"] == [{"id": B, "deletedDate": "2026-11-24T10:02:00.000+0000"}]
    old = client.get("sobjects/Account/deleted/", start="2026-11-01T00:00:00+00:00", end=window["end"])
    assert old.status_code == 400 and old.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_every_answer_reports_usage_and_the_daily_limit_refuses_with_403() -> None:
    with FakeSalesforce(daily_limit=2) as fake:
        client = Client(fake)
        assert client.get("limits").headers["Sforce-Limit-Info"] == "api-usage=1/2"
        assert client.get("limits").headers["Sforce-Limit-Info"] == "api-usage=2/2"
        refused = client.get("limits")
        assert refused.status_code == 403 and refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_an_expired_session_is_a_401_array_until_a_new_token_is_issued(fake: FakeSalesforce) -> None:
    client = Client(fake)
    assert client.get("limits").status_code == 200
    fake.expire_session()
    expired = client.get("limits")
    assert expired.status_code == 401 and expired.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    token = requests.post(f"{fake.url}/services/oauth2/token", data={"grant_type": "client_credentials"},
                          timeout=5).json()["access_token"]
    assert Client(fake, token).get("limits").status_code == 200
    fake.refuse_logins()
    refused = requests.post(f"{fake.url}/services/oauth2/token", data={"grant_type": "client_credentials"}, timeout=5)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"


def test_scripted_faults_html_503_slow_answers_and_down(fake: FakeSalesforce) -> None:
    client = Client(fake)
    fake.unavailable("limits")
    html = client.get("limits")
    assert html.status_code == 503 and html.headers["Content-Type"].startswith("text/html")
    fake.slow("limits", 0.3)
    started = time.monotonic()
    assert client.get("limits").status_code == 200 and time.monotonic() - started >= 0.3
    fake.down()
    assert client.get("limits").status_code == 503
    fake.up()
    assert client.get("limits").status_code == 200


def test_pages_vary_in_size_and_honour_the_batch_size_header() -> None:
    with FakeSalesforce(vary_pages=True) as fake:
        fake.generate(3000)
        client = Client(fake)
        client.session.headers["Sforce-Query-Options"] = "batchSize=500"
        page = client.get("query/", q="SELECT Id FROM Account").json()
        sizes = [len(page["records"])]
        while not page["done"]:
            page = client.get(page["nextRecordsUrl"]).json()
            sizes.append(len(page["records"]))
        assert sum(sizes) == 3000 and max(sizes) <= 500 and len(set(sizes)) > 1
