"""Bulk API 2.0 query jobs of the fake: UploadComplete -> InProgress -> JobComplete as they are polled, results
as CSV pages (a header row, every value a quoted string, empty for null) behind an opaque locator."""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.salesforce.soql import Query

STATES = ("UploadComplete", "InProgress", "JobComplete")


@dataclass
class BulkJob:
    id: str
    operation: str
    soql: str
    query: Query
    created: str
    api_version: str
    state: str = "UploadComplete"
    polls: int = 0
    fail_with: str | None = None
    types: dict[str, str] = field(default_factory=dict)  # describe types of the selected fields
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id, "operation": self.operation, "object": "Account", "createdById": "005000000000001AAA",
            "createdDate": self.created, "systemModstamp": self.created, "state": self.state,
            "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(self.api_version),
            "jobType": "V2Query", "lineEnding": "LF", "columnDelimiter": "COMMA",
            "numberRecordsProcessed": len(self.rows) if self.state == "JobComplete" else 0,
            "retries": 0, "totalProcessingTime": 0,
        }
        if self.error:
            info["errorMessage"] = self.error
        return info


def encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def decode_locator(locator: str) -> int | None:
    try:
        return int(base64.b64decode(locator + "=" * (-len(locator) % 4)).decode())
    except ValueError:
        return None


def csv_page(job: BulkJob, offset: int, max_records: int) -> tuple[str, int, str]:
    """(CSV text, rows in it, next locator or the string "null"): O(rows of the page)."""
    rows = job.rows[offset : offset + max_records]
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(job.query.fields)
    types = job.types
    writer.writerows([_text(row.get(name), types[name]) for name in job.query.fields] for row in rows)
    end = offset + len(rows)
    return out.getvalue(), len(rows), encode_locator(end) if end < len(job.rows) else "null"


def _text(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "datetime":  # bulk CSV shows UTC with a Z (REST JSON says +0000): a difference clients must absorb
        return str(value).replace("+0000", "Z")
    return str(value)
