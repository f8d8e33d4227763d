"""Avro for `client.events`: one writer schema per (event type, schema version) in `schemas/client/`.

The value is schemaless Avro (no container header); the `event_type` and `schema_version` headers name the
writer schema, so a reader always decodes with the schema the writer used.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro

from worker.adapters.postgres.outbox import OutboxRow

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"  # worker/schemas: the top-level schemas/ (a link in
# the repository, a copy in the wheel)
_FILE = re.compile(r"^(?P<type>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")
_CHANGE_LISTS = ("changes", "differences")


class UnknownEventSchema(LookupError):
    """No writer schema for this event type and version."""


class ClientEventCodec:
    def __init__(self, schemas: Mapping[tuple[str, int], Any]) -> None:
        self._schemas = dict(schemas)
        self._record_unions = {key: _record_unions(schema) for key, schema in self._schemas.items()}

    @classmethod
    def from_directory(cls, root: Path | None = None) -> ClientEventCodec:
        folder = (root or SCHEMAS_DIR) / "client"
        schemas = {}
        for path in sorted(folder.glob("*.avsc")):
            match = _FILE.match(path.name)
            if match:
                key = (match["type"], int(match["version"]))
                schemas[key] = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
        if not schemas:
            raise FileNotFoundError(f"no client event schemas in {folder}")
        return cls(schemas)

    def schema(self, event_type: str, schema_version: int) -> Any:
        try:
            return self._schemas[(event_type, schema_version)]
        except KeyError:
            raise UnknownEventSchema(f"no schema for {event_type} v{schema_version}") from None

    def encode_row(self, row: OutboxRow) -> bytes:
        recorded = row.created_at if isinstance(row.created_at, datetime) else datetime.now(UTC)
        record = {
            **to_wire(row.payload),
            "event_id": row.event_id,
            "client_id": row.stream_id,
            "version": row.version,
            "recorded_at": recorded,
        }
        return self.encode(row.event_type, row.schema_version, record)

    def encode(self, event_type: str, schema_version: int, record: Mapping[str, Any]) -> bytes:
        schema = self.schema(event_type, schema_version)
        datum = dict(record)
        # A record in a union (the `change` reference) is named for fastavro, which otherwise picks its branch by
        # validating the whole value against each: half the time of encoding a ClientDetailsChanged. A value that
        # does not fit the named record is still refused (by the write).
        for name, branch in self._record_unions[(event_type, schema_version)]:
            value = datum.get(name)
            if type(value) is dict:
                datum[name] = (branch, value)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, datum)
        return out.getvalue()

    def decode(self, value: bytes, event_type: str, schema_version: int) -> dict[str, Any]:
        """The wire record as a plain dict: envelope fields plus the event payload in the domain's shape."""
        record = fastavro.schemaless_reader(io.BytesIO(value), self.schema(event_type, schema_version), None)
        return from_wire(record)  # type: ignore[arg-type]


def _record_unions(schema: Any) -> tuple[tuple[str, str], ...]:
    """(field, record name) for each top-level field of ``schema`` whose type is a union of null and one record."""
    found = []
    for field in schema.get("fields", []) if isinstance(schema, Mapping) else []:
        branches = field["type"]
        if isinstance(branches, list):
            records = [b for b in branches if isinstance(b, Mapping) and b.get("type") == "record"]
            if len(records) == 1 and len(branches) == 2 and "null" in branches:
                found.append((field["name"], records[0]["name"]))
    return tuple(found)


def to_wire(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Domain payload -> Avro record fields: extra values and changed values JSON-encoded."""
    record = dict(payload)
    details = record.get("details")
    if isinstance(details, Mapping):
        record["details"] = {**details, "extra": {k: json.dumps(v) for k, v in details.get("extra", {}).items()}}
    for key in _CHANGE_LISTS:
        if key in record:
            record[key] = [
                {"attribute": attr, "old": json.dumps(pair[0]), "new": json.dumps(pair[1])}
                for attr, pair in record[key].items()
            ]
    return record


def from_wire(record: Mapping[str, Any]) -> dict[str, Any]:
    payload = dict(record)
    details = payload.get("details")
    if isinstance(details, Mapping):
        payload["details"] = {**details, "extra": {k: json.loads(v) for k, v in details.get("extra", {}).items()}}
    for key in _CHANGE_LISTS:
        if key in payload:
            payload[key] = {
                c["attribute"]: [_loads(c["old"]), _loads(c["new"])] for c in payload[key]
            }
    recorded = payload.get("recorded_at")
    if isinstance(recorded, datetime):
        payload["recorded_at"] = recorded.isoformat()
    return payload


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
