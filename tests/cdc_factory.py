"""Builds CDC messages as the Pub/Sub client libraries emit them (`{id, schemaId, replayId, payload}`, field
names already expanded), with a transaction key and sequence per change: test data for the real pipeline."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

ACCOUNT_FIELDS = (
    "Name", "Type", "Industry", "Phone", "Website", "BillingAddress", "OwnerId", "AnnualRevenue",
    "NumberOfEmployees", "Rating", "AccountSource", "ParentId", "Active__c", "Description",
    "LastModifiedDate",
)
ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude", "GeocodeAccuracy")


class CdcFactory:
    """Every call returns (key, value bytes) for one change; commit timestamps advance one second each."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._clock = itertools.count(start_ms, 1000)
        self._replay = itertools.count(1000)

    def create(self, record_id: str, **fields: Any) -> tuple[bytes, bytes]:
        body = {"Name": f"Client {record_id[-4:]}", "Type": "Customer - Direct", "Active__c": "Yes", **fields}
        return self._message("CREATE", [record_id], body, changed=[], nulled=[])

    def update(self, record_id: str | list[str], nulled: tuple[str, ...] = (), **fields: Any) -> tuple[bytes, bytes]:
        ids = [record_id] if isinstance(record_id, str) else record_id
        changed = ["LastModifiedDate", *fields, *nulled]
        return self._message("UPDATE", ids, fields, changed=changed, nulled=list(nulled))

    def delete(self, record_id: str) -> tuple[bytes, bytes]:
        return self._message("DELETE", [record_id], {}, changed=[], nulled=[])

    def undelete(self, record_id: str, **fields: Any) -> tuple[bytes, bytes]:
        body = {"Name": f"Client {record_id[-4:]}", "Type": "Customer - Direct", "Active__c": "Yes", **fields}
        return self._message("UNDELETE", [record_id], body, changed=[], nulled=[])

    def gap(self, record_ids: list[str], change_type: str = "GAP_UPDATE") -> tuple[bytes, bytes]:
        return self._message(change_type, record_ids, {}, changed=[], nulled=[], origin="")

    def overflow(self) -> tuple[bytes, bytes]:
        return self._message("GAP_OVERFLOW", ["000000000000000AAA"], {}, changed=[], nulled=[], origin="")

    def _message(
        self, change_type: str, ids: list[str], body: dict[str, Any], *, changed: list[str], nulled: list[str],
        origin: str = "com/salesforce/api/rest/62.0;client=SfdcInternalAPI/",
    ) -> tuple[bytes, bytes]:
        ts = next(self._clock)
        payload: dict[str, Any] = {
            "ChangeEventHeader": {
                "entityName": "Account",
                "recordIds": ids,
                "changeType": change_type,
                "changeOrigin": origin,
                "transactionKey": str(uuid.uuid4()),
                "sequenceNumber": 1,
                "commitTimestamp": ts,
                "commitNumber": ts * 1000,
                "commitUser": "005xx000001X8UzAAK",
                "nulledFields": nulled,
                "diffFields": [],
                "changedFields": changed,
            },
        }
        full = change_type in ("CREATE", "UNDELETE")
        for name in ACCOUNT_FIELDS:
            payload[name] = None
        payload.update(body)
        if change_type not in ("DELETE",) and not change_type.startswith("GAP"):
            payload["LastModifiedDate"] = ts
        if full and "BillingAddress" not in body:
            payload["BillingAddress"] = dict.fromkeys(ADDRESS_PARTS)
        message = {"id": str(uuid.uuid4()), "schemaId": "test-schema", "replayId": next(self._replay),
                   "payload": payload}
        return ids[0].encode(), json.dumps(message).encode()
