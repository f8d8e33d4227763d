"""The Salesforce API calls for Account: describe, retrieve by id (sObject Collections, then queryAll for the
ids it did not return: deleted or merged), SOQL, Bulk API 2.0 query jobs, event schemas.

simple-salesforce logs in and formats SOQL; every call goes through one `SalesforceTransport` (retries, circuit,
session refresh, API usage and budget). No network in `__init__`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import requests
from simple_salesforce import format_soql  # type: ignore[attr-defined]

from worker.adapters.salesforce.api_errors import SalesforceRequestError
from worker.adapters.salesforce.login import Login, login_for
from worker.adapters.salesforce.transport import ApiStats, SalesforceTransport, Usage
from worker.config import RetrySettings, SalesforceSettings

COLLECTION_MAX_IDS = 2000  # sObject Collections retrieve: ids per POST
MAX_URI_CHARS = 8000  # Salesforce refuses URIs past 16,384 bytes (414); stay well under, headers count too
_ID_COST = 30  # one quoted 18-character id in an IN list, URL-encoded, with its separator

__all__ = ["ApiStats", "BulkJob", "Login", "SalesforceApi", "Usage"]


@dataclass(frozen=True)
class BulkJob:
    """A Bulk API 2.0 query job as last polled: UploadComplete, InProgress, JobComplete, Failed or Aborted."""

    id: str
    state: str
    error: str | None = None
    records: int | None = None  # numberRecordsProcessed, once the job is complete


class SalesforceApi:
    def __init__(
        self,
        settings: SalesforceSettings,
        retry: RetrySettings,
        *,
        login: Login | None = None,
        session: requests.Session | None = None,
        on_call: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self._settings = settings
        self._session = session or requests.Session()
        self._transport = SalesforceTransport(settings, retry, login or login_for(settings), self._session, on_call)
        self._describe: dict[str, str] | None = None

    @property
    def circuit_state(self) -> str:
        return self._transport.circuit_state

    @property
    def stats(self) -> ApiStats:
        return self._transport.stats

    @property
    def usage(self) -> Usage | None:
        """Daily API requests as the last answer reported them (Sforce-Limit-Info)."""
        return self._transport.usage

    # -- describe and records ----------------------------------------------------------------------------------

    def describe_account(self) -> dict[str, str]:
        """Account field name -> Salesforce type (`string`, `int`, `currency`, ...), read once per instance."""
        if self._describe is None:
            answer = self._transport.call("GET", "sobjects/Account/describe")
            self._describe = {str(f["name"]): str(f["type"]) for f in (answer or {}).get("fields", [])}
        return self._describe

    def fetch_account(self, record_id: str) -> dict[str, Any] | None:
        """One Account; None when Salesforce answers 404 (deleted or never existed)."""
        record: dict[str, Any] | None = self._transport.call("GET", f"sobjects/Account/{record_id}")
        return record

    def retrieve_accounts(self, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Records by their 18-character Id: live ones through sObject Collections (ids POSTed, ≤ 2,000 per
        call), then deleted and merged ones (IsDeleted, MasterRecordId) by a queryAll of the ids left. Ids
        Salesforce never had are absent."""
        names = list(dict.fromkeys(["Id", *fields]))
        found: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        for start in range(0, len(ids), COLLECTION_MAX_IDS):
            chunk = list(ids[start : start + COLLECTION_MAX_IDS])
            answer = self._transport.call("POST", "composite/sobjects/Account", body={"ids": chunk, "fields": names})
            for asked, record in zip(chunk, answer or [None] * len(chunk), strict=True):
                if record is None:
                    missing.append(asked)
                else:
                    found[str(record["Id"])] = _without_attributes(record)
        if missing:
            found.update(self.fetch_accounts(missing, names, include_deleted=True))
        return found

    def fetch_accounts(self, ids: Sequence[str], fields: Sequence[str] | None = None,
                       include_deleted: bool = False) -> dict[str, dict[str, Any]]:
        """Accounts by id through SOQL `Id IN`, in batches short enough for the URI limit; ids Salesforce does
        not return are absent. Every field of the org's describe when ``fields`` is None."""
        names = list(fields) if fields is not None else self._readable_fields()
        template = f"SELECT {', '.join(names)} FROM Account WHERE Id IN {{ids}}"
        room = (MAX_URI_CHARS - len(quote_plus(template)) - 200) // _ID_COST
        size = max(1, min(self._settings.batch_size, room))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), size):
            soql = format_soql(template, ids=list(ids[start : start + size]))
            for record in self.query(soql, include_deleted=include_deleted):
                found[str(record["Id"])] = record
        return found

    def iter_all_accounts(self, fields: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every Account, deleted ones included (queryAll), page by page."""
        names = list(fields) if fields is not None else self._readable_fields()
        yield from self.query(f"SELECT {', '.join(names)} FROM Account", include_deleted=True)

    def query(self, soql: str, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """The records of a SOQL query, following `nextRecordsUrl` (a host-relative path) page by page."""
        page = self._transport.call("GET", "queryAll/" if include_deleted else "query/", params={"q": soql})
        while page:
            for record in page.get("records", []):
                yield _without_attributes(record)
            next_url = page.get("nextRecordsUrl")
            page = self._transport.call("GET", next_url) if next_url and not page.get("done", True) else None

    def _readable_fields(self) -> list[str]:
        return [name for name, kind in self.describe_account().items() if kind not in ("address", "location")]

    # -- Bulk API 2.0 ------------------------------------------------------------------------------------------

    def start_bulk_query(self, soql: str, all_rows: bool = True) -> str:
        """Create a query job (queryAll: deleted and merged records included); returns its id."""
        job = self._transport.call("POST", "jobs/query", body={
            "operation": "queryAll" if all_rows else "query", "query": soql, "contentType": "CSV",
            "columnDelimiter": "COMMA", "lineEnding": "LF"})
        return str(job["id"])

    def bulk_job(self, job_id: str) -> BulkJob:
        job = self._transport.call("GET", f"jobs/query/{job_id}")
        if job is None:
            raise SalesforceRequestError(404, "NOT_FOUND", f"Bulk query job {job_id} does not exist (any more)")
        records = job.get("numberRecordsProcessed")
        return BulkJob(job_id, str(job["state"]), job.get("errorMessage"),
                       int(records) if records is not None and job["state"] == "JobComplete" else None)

    def bulk_results(self, job_id: str, locator: str | None = None,
                     max_records: int | None = None) -> tuple[list[dict[str, str]], str | None]:
        """One page of a complete job: rows as strings (empty: null) and the next locator (None: last page)."""
        params: dict[str, Any] = {"maxRecords": max_records or self._settings.bulk_page_size}
        if locator:
            params["locator"] = locator
        response = self._transport.call("GET", f"jobs/query/{job_id}/results", params=params, raw=True)
        if response is None:
            raise SalesforceRequestError(404, "NOT_FOUND", f"Bulk query job {job_id} has no results (any more)")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        expected = response.headers.get("Sforce-NumberOfRecords")
        if expected is not None and int(expected) != len(rows):
            raise SalesforceRequestError(200, "BAD_RESULTS", f"{len(rows)} rows read, {expected} announced")
        next_locator = response.headers.get("Sforce-Locator")
        return rows, None if next_locator in (None, "", "null") else next_locator

    # -- event schemas -----------------------------------------------------------------------------------------

    def fetch_event_schema(self, schema_id: str) -> str:
        schema = self._transport.call("GET", f"event/eventSchema/{schema_id}", params={"payloadFormat": "EXPANDED"})
        if schema is None:
            from worker.adapters.salesforce.errors import UnknownSchema

            raise UnknownSchema(f"Salesforce has no event schema {schema_id!r}")
        return json.dumps(schema)


def _without_attributes(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "attributes"}
