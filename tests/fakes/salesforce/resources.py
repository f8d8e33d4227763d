"""The REST resources of the fake org: describe, sObject rows, SOQL query/queryAll with cursors, sObject
Collections retrieve, Bulk API 2.0 query jobs, getUpdated/getDeleted, limits. Each answer is (status, body,
headers); errors are Salesforce's JSON array `[{"errorCode": ..., "message": ...}]`."""

from __future__ import annotations

import itertools
import random
import re
from datetime import timedelta
from typing import Any

from tests.fakes.salesforce.bulk import BulkJob, csv_page, decode_locator
from tests.fakes.salesforce.describe import COMPOUND
from tests.fakes.salesforce.org import AccountStore
from tests.fakes.salesforce.soql import SoqlError, parse, parse_datetime, sf_datetime

Answer = tuple[int, Any, dict[str, str]]
MAX_COLLECTION_IDS = 2000
_CURSOR = re.compile(r"^(01g[0-9A-Za-z]{15})-(\d+)$")
_ADDRESS_PARTS = {"street": "Street", "city": "City", "state": "State", "postalCode": "PostalCode",
                  "country": "Country", "stateCode": "StateCode", "countryCode": "CountryCode",
                  "latitude": "Latitude", "longitude": "Longitude", "geocodeAccuracy": "GeocodeAccuracy"}


def error(status: int, code: str, message: str) -> Answer:
    return status, [{"message": message, "errorCode": code}], {}


class AccountResources:
    def __init__(self, store: AccountStore, page_size: int, vary_pages: bool, bulk_polls: int,
                 bulk_page_size: int) -> None:
        self.store, self.page_size, self.bulk_polls, self.bulk_page_size = store, page_size, bulk_polls, bulk_page_size
        self._rng = random.Random(7) if vary_pages else None
        self._cursors: dict[str, tuple[list[dict[str, Any]], list[str]]] = {}
        self._counter = itertools.count(1)
        self.jobs: dict[str, BulkJob] = {}
        self.fail_jobs: list[str] = []  # errorMessage of the next jobs to fail

    # -- describe and rows -------------------------------------------------------------------------------------

    def describe(self) -> Answer:
        return 200, self.store.describe.as_json(), {}

    def row(self, version: str, record_id: str, fields: str | None) -> Answer:
        record = self.store.get(record_id)
        if record is None or record["IsDeleted"]:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        names = [f.strip() for f in fields.split(",")] if fields else list(self.store.describe.types)
        return 200, self._project(version, record, names), {}

    # -- SOQL --------------------------------------------------------------------------------------------------

    def query(self, version: str, soql: str, all_rows: bool, batch_size: int | None) -> Answer:
        try:
            query = parse(soql, self.store.describe)
        except SoqlError as exc:
            return error(400, exc.code, exc.message)
        rows = self.store.select(query, all_rows)
        cursor = f"01g{next(self._counter):012d}AAA"
        self._cursors[cursor] = (rows, query.fields)
        return self._page(version, cursor, 0, min(self.page_size, batch_size or 2000))

    def query_more(self, version: str, locator: str, batch_size: int | None) -> Answer:
        match = _CURSOR.match(locator)
        if not match or match[1] not in self._cursors:
            return error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(version, match[1], int(match[2]), min(self.page_size, batch_size or 2000))

    def _page(self, version: str, cursor: str, offset: int, size: int) -> Answer:
        rows, fields = self._cursors[cursor]
        if self._rng is not None:  # Salesforce may answer smaller pages than asked
            size = self._rng.randint(max(1, size // 2), size)
        end = offset + size
        page: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows),
                                "records": [self._project(version, r, fields) for r in rows[offset:end]]}
        if end < len(rows):
            page["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}-{end}"
        return 200, page, {}

    def _project(self, version: str, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": "Account",
                                              "url": f"/services/data/v{version}/sobjects/Account/{record['Id']}"}}
        for name in fields:
            if name in COMPOUND:
                prefix = name[: -len("Address")]
                parts = {key: record.get(prefix + part) for key, part in _ADDRESS_PARTS.items()}
                out[name] = parts if any(v is not None for v in parts.values()) else None
            else:
                out[name] = record.get(name)
        return out

    # -- sObject Collections -----------------------------------------------------------------------------------

    def collection(self, version: str, body: Any) -> Answer:
        if not isinstance(body, dict) or not isinstance(body.get("ids"), list) or not body.get("fields"):
            return error(400, "JSON_PARSER_ERROR", "ids and fields are required")
        ids, names = body["ids"], list(body["fields"])
        if len(ids) > MAX_COLLECTION_IDS:
            return error(400, "LIMIT_EXCEEDED", f"ids: more than {MAX_COLLECTION_IDS} ids in one request")
        fields = []
        for name in names:
            canonical = self.store.describe.canonical(str(name))
            if canonical is None:
                return error(400, "INVALID_FIELD", f"No such column '{name}' on entity 'Account'. If you are "
                             "attempting to use a custom field, be sure to append the '__c' after the custom field "
                             "name. Please reference your WSDL or the describe call for the appropriate names.")
            fields.append(canonical)
        out: list[dict[str, Any] | None] = []
        for record_id in ids:
            record = self.store.get(str(record_id)) if len(str(record_id)) in (15, 18) else None
            out.append(None if record is None or record["IsDeleted"] else self._project(version, record, fields))
        return 200, out, {}

    # -- Bulk API 2.0 ------------------------------------------------------------------------------------------

    def create_job(self, version: str, body: Any) -> Answer:
        if not isinstance(body, dict) or body.get("operation") not in ("query", "queryAll"):
            return error(400, "INVALIDJOB", "operation must be query or queryAll")
        soql = str(body.get("query") or "")
        try:
            query = parse(soql, self.store.describe)
        except SoqlError as exc:
            return error(400, "INVALIDJOB", f"{exc.code}: {exc.message}")
        if any(name in COMPOUND for name in query.fields):
            return error(400, "INVALIDJOB", "Selecting compound data not supported in Bulk Query")
        job = BulkJob(id=f"750{next(self._counter):012d}AAA", operation=body["operation"], soql=soql, query=query,
                      created=sf_datetime(self.store.now), api_version=version,
                      types={f: self.store.describe.types[f] for f in query.fields})
        if self.fail_jobs:
            job.fail_with = self.fail_jobs.pop(0)
        self.jobs[job.id] = job
        answer = job.as_json()
        if self.bulk_polls <= 0:
            self._advance(job, complete=True)
        return 200, answer, {}

    def job(self, job_id: str, method: str, body: Any) -> Answer:
        job = self.jobs.get(job_id)
        if job is None:
            return error(404, "NOT_FOUND", "Job not found")
        if method == "DELETE":
            del self.jobs[job_id]
            return 204, None, {}
        if method == "PATCH":
            if isinstance(body, dict) and body.get("state") == "Aborted" and job.state not in ("JobComplete",
                                                                                                "Failed"):
                job.state = "Aborted"
            return 200, job.as_json(), {}
        job.polls += 1
        self._advance(job, complete=job.polls >= self.bulk_polls)
        return 200, job.as_json(), {}

    def _advance(self, job: BulkJob, complete: bool) -> None:
        if job.state in ("JobComplete", "Failed", "Aborted"):
            return
        if not complete:
            job.state = "InProgress"
        elif job.fail_with is not None:
            job.state, job.error = "Failed", job.fail_with
        else:
            job.rows = self.store.select(job.query, all_rows=job.operation == "queryAll")
            job.state = "JobComplete"

    def results(self, job_id: str, locator: str | None, max_records: str | None) -> Answer:
        job = self.jobs.get(job_id)
        if job is None:
            return error(404, "NOT_FOUND", "Job not found")
        if job.state != "JobComplete":
            return error(412, "JOB_NOT_COMPLETE", f"Job {job_id} is not complete (state {job.state})")
        offset = decode_locator(locator) if locator else 0
        if offset is None or offset > len(job.rows):
            return error(400, "INVALIDLOCATOR", f"invalid locator: {locator}")
        size = int(max_records) if max_records and max_records.isdigit() and int(max_records) > 0 else 0
        text, count, next_locator = csv_page(job, offset, size or self.bulk_page_size)
        return 200, text, {"Content-Type": "text/csv", "Sforce-NumberOfRecords": str(count),
                           "Sforce-Locator": next_locator}

    # -- replication (getUpdated / getDeleted) -----------------------------------------------------------------

    def replicated(self, which: str, start: str | None, end: str | None) -> Answer:
        if not start or not end:
            return error(400, "MISSING_ARGUMENT", "start and end are required")
        try:
            since, until = (parse_datetime(v).replace(second=0, microsecond=0) for v in (start, end))
        except ValueError:
            return error(400, "INVALID_REPLICATION_DATE", "start and end must be ISO 8601 datetimes with an offset")
        if since.tzinfo is None or until.tzinfo is None:
            return error(400, "INVALID_REPLICATION_DATE", "start and end need a time zone offset")
        now = self.store.now
        days = 30 if which == "updated" else 15
        earliest = (now - timedelta(days=days)).replace(second=0, microsecond=0)
        if since < earliest:
            return error(400, "INVALID_REPLICATION_DATE", f"startDate must be within the last {days} days")
        if until <= since:
            return error(400, "INVALID_REPLICATION_DATE", "endDate must be after startDate")
        covered = min(until, now.replace(second=0, microsecond=0))
        if which == "updated":
            ids = self.store.updated_between(since, covered)
            return self._bounded(ids, {"ids": ids, "latestDateCovered": sf_datetime(covered)})
        deleted = self.store.deleted_between(since, covered)
        return self._bounded(deleted, {
            "deletedRecords": [{"id": rid, "deletedDate": sf_datetime(at)} for rid, at in deleted],
            "earliestDateAvailable": sf_datetime(earliest), "latestDateCovered": sf_datetime(covered)})

    @staticmethod
    def _bounded(items: list[Any], body: dict[str, Any]) -> Answer:
        if len(items) > 600_000:
            return error(400, "EXCEEDED_ID_LIMIT", "more than 600,000 ids: narrow the window")
        return 200, body, {}

    def limits(self, used: int, limit: int) -> Answer:
        jobs = len(self.jobs)
        return 200, {"DailyApiRequests": {"Max": limit, "Remaining": max(limit - used, 0)},
                     "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - jobs},
                     "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562}}, {}

