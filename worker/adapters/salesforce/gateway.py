"""The ClientSource port on Salesforce: Accounts read by the fields the mapping (and clients' extras) name, less
those the org lacks, turned into client data by the ACL; full scans through Bulk API 2.0 queryAll jobs."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from worker.adapters.salesforce.api import SalesforceApi
from worker.adapters.salesforce.errors import InvalidChangeEvent
from worker.adapters.salesforce.formats import iso_to_ms
from worker.adapters.salesforce.ids import normalize_id
from worker.adapters.salesforce.mapping import PERSON_NAME_PARTS, FieldMapping
from worker.application.errors import SourceRefused
from worker.application.ports import ApiUsage, FetchedClient, ScanPage

ALWAYS_READ = ("Id", "IsDeleted", "MasterRecordId", "SystemModstamp", "LastModifiedDate")
_NOT_CLIENT_DATA = ("MasterRecordId", "IsPersonAccount")  # read to classify a record, not client attributes
_NOT_SELECTABLE = ("address", "location")  # compound fields: refused by Bulk queries, twins of flat fields
_INTEGERS = ("int", "long")
_DECIMALS = ("double", "currency", "percent")


class SalesforceClientSource:
    def __init__(self, api: SalesforceApi, mapping: FieldMapping) -> None:
        self._api = api
        self._mapping = mapping

    def fetch_clients(self, client_ids: Sequence[str], extra_fields: Collection[str] = ()) -> dict[str, FetchedClient]:
        fields = self.fields(extra_fields)
        keys = {cid: _key(cid) for cid in client_ids}
        records = self._api.retrieve_accounts([k for k in dict.fromkeys(keys.values()) if k], fields)
        covered = self._mapping.covered_attributes(fields)
        gone = {cid: FetchedClient(cid, None, True, None, covered) for cid in client_ids}
        return {cid: self._to_client(records[key], cid, covered) if key in records else gone[cid]
                for cid, key in keys.items()}

    def start_scan(self, extra_fields: Collection[str] = ()) -> str:
        return self._api.start_bulk_query(f"SELECT {', '.join(self.fields(extra_fields))} FROM Account")

    def scan_page(self, scan_id: str, cursor: str | None) -> ScanPage | None:
        if cursor is None:  # a locator comes from a complete job: only the first page waits for it
            job = self._api.bulk_job(scan_id)
            if job.state in ("Failed", "Aborted"):
                raise SourceRefused(f"Bulk query job {scan_id} {job.state}: {job.error or 'no reason given'}",
                                    code=job.state)
            if job.state != "JobComplete":
                return None
        rows, next_cursor = self._api.bulk_results(scan_id, cursor)
        covered = self._mapping.covered_attributes(rows[0].keys() if rows else ())
        return ScanPage([self._to_client(row, str(row["Id"]), covered) for row in rows], next_cursor)

    def scan_size(self, scan_id: str) -> int | None:
        """How many records the scan reads, once Salesforce knows (for a progress bar)."""
        return self._api.bulk_job(scan_id).records

    def changed_since(self, since_ms: int, extra_fields: Collection[str] = ()) -> list[FetchedClient]:
        """Accounts modified at or after ``since_ms`` (SystemModstamp), deleted ones included (queryAll)."""
        fields = self.fields(extra_fields)
        since = datetime.fromtimestamp(since_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        soql = f"SELECT {', '.join(fields)} FROM Account WHERE SystemModstamp >= {since}"
        covered = self._mapping.covered_attributes(fields)
        return [self._to_client(row, str(row["Id"]), covered) for row in self._api.query(soql, include_deleted=True)]

    def usage(self) -> ApiUsage | None:
        usage = self._api.usage
        return ApiUsage(usage.used, usage.limit) if usage is not None else None

    def fields(self, extra_fields: Collection[str] = ()) -> list[str]:
        """What a read selects: the system fields, the mapping's, then ``extra_fields``, each only if the org's
        describe has it (a mapped field the org lacks is left out, never an INVALID_FIELD)."""
        types = self._api.describe_account()
        wanted = [*ALWAYS_READ, *self._mapping.rest_fields(person_names="IsPersonAccount" in types)]
        if "IsPersonAccount" in types:
            wanted.append("IsPersonAccount")
        wanted += sorted(extra_fields)
        return [f for f in dict.fromkeys(wanted) if f in types and types[f] not in _NOT_SELECTABLE]

    def _to_client(self, raw: Mapping[str, Any], client_id: str, covered: frozenset[str]) -> FetchedClient:
        types = self._api.describe_account()
        record = {name: _typed(value, types.get(name, "string")) for name, value in raw.items()}
        modified = record.get("SystemModstamp") or record.get("LastModifiedDate")
        last_modified_ms = iso_to_ms(modified) if modified else None
        merged_into = record.get("MasterRecordId")
        if record.get("IsDeleted"):
            return FetchedClient(client_id, None, True, last_modified_ms, covered, merged_into)
        parts = {p: record.pop(p) for p in PERSON_NAME_PARTS if p in record}
        if record.get("IsPersonAccount") and any(parts.values()):
            record["Name"] = parts  # the mapping makes the name from its parts and keeps them in extra.PersonName
        for name in (*ALWAYS_READ, *_NOT_CLIENT_DATA):
            if name not in ("Id", "IsDeleted"):
                record.pop(name, None)
        data = self._mapping.record_to_client_data(record)
        return FetchedClient(client_id, data, False, last_modified_ms, covered, merged_into)


def _key(client_id: str) -> str:
    try:
        return normalize_id(client_id)
    except InvalidChangeEvent:
        return ""  # not an id Salesforce could have: gone


def _typed(value: Any, kind: str) -> Any:
    """REST values as they are; Bulk CSV strings (empty: null) by their describe type. Datetimes stay text,
    in REST's `+0000` form whichever API read them."""
    if not isinstance(value, str):
        return value
    if value == "":
        return None
    if kind == "boolean":
        return value.lower() == "true"
    if kind in _INTEGERS:
        return int(float(value))
    if kind in _DECIMALS:
        return float(value)
    if kind == "datetime" and value.endswith("Z"):
        return value[:-1] + "+0000"
    return value
