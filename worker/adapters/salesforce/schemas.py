"""Writer schemas of change events, found by schema id: `schemas/salesforce/index.json` first, then a fetch
callable (Salesforce's REST event-schema resource through the gateway, or a Schema Registry), cached by id."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

from worker.adapters.salesforce.bitmap import FieldLayout
from worker.adapters.salesforce.errors import UnknownSchema

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas" / "salesforce"  # worker/schemas -> schemas/


class WriterSchema:
    def __init__(self, schema_id: str, raw: dict[str, Any]) -> None:
        self.schema_id = schema_id
        self.raw = raw
        self.parsed = fastavro.parse_schema(raw)
        self.layout = layout_of(raw)


def layout_of(raw: dict[str, Any]) -> FieldLayout:
    """Field order for bitmap decoding; nested names of record-typed fields (the record branch of a union)."""
    records: dict[str, dict[str, Any]] = {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "record" and "name" in node:
                records[node["name"]] = node
                records[node["name"].split(".")[-1]] = node
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(raw)
    names = tuple(field["name"] for field in raw["fields"])
    nested: dict[str, tuple[str, ...]] = {}
    for field in raw["fields"]:
        branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
        for branch in branches:
            record = branch if isinstance(branch, dict) else records.get(str(branch).split(".")[-1])
            if isinstance(record, dict) and record.get("type") == "record" and field["name"] != "ChangeEventHeader":
                nested[field["name"]] = tuple(f["name"] for f in record["fields"])
    return FieldLayout(names, nested)


class SchemaResolver:
    def __init__(self, fetch: Callable[[str], str | None] | None = None, directory: Path = SCHEMAS_DIR) -> None:
        self._fetch = fetch
        self._directory = directory
        self._cache: dict[str, WriterSchema] = {}
        self._lock = threading.Lock()

    def add(self, schema_id: str, raw: dict[str, Any] | str) -> WriterSchema:
        schema = WriterSchema(schema_id, json.loads(raw) if isinstance(raw, str) else raw)
        with self._lock:
            self._cache[schema_id] = schema
        return schema

    def get(self, schema_id: str) -> WriterSchema:
        """The writer schema for ``schema_id``; `UnknownSchema` when neither the folder nor the fetch has it."""
        cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        raw = self._from_directory(schema_id)
        if raw is None and self._fetch is not None:
            raw = self._fetch(schema_id)
        if raw is None:
            raise UnknownSchema(f"no writer schema for schema id {schema_id!r} (add it to schemas/salesforce/)")
        try:
            return self.add(schema_id, raw)
        except (ValueError, KeyError, TypeError, fastavro.schema.SchemaParseException) as exc:
            raise UnknownSchema(f"schema {schema_id!r} is not a valid Avro schema: {exc}") from exc

    def known(self, schema_id: str | None) -> WriterSchema | None:
        """The schema when it can be had without error, else None."""
        if not schema_id:
            return None
        try:
            return self.get(schema_id)
        except UnknownSchema:
            return None

    def _from_directory(self, schema_id: str) -> str | None:
        index = self._directory / "index.json"
        if not index.exists():
            return None
        files = json.loads(index.read_text(encoding="utf-8")).get("schemas", {})
        name = files.get(schema_id)
        return (self._directory / name).read_text(encoding="utf-8") if name else None


class SchemaRegistryRefused(Exception):
    """The Schema Registry refused us (401/403, or another 4xx than 404): a setting or a permission is wrong, and
    no retry will fix it."""


def registry_fetch(url: str, timeout_s: float = 10.0) -> Callable[[str], str | None]:
    """Writer schemas of Confluent-framed records (`registry:<id>`) from a Schema Registry's REST API.

    404: `UnknownSchema` (the record is dead-lettered, stage parse); 401/403 and other 4xx:
    `SchemaRegistryRefused` (the worker stops with one line); 5xx, 429 and network faults: transient."""
    import requests

    base = url.rstrip("/")

    def fetch(schema_id: str) -> str | None:
        if not schema_id.startswith("registry:"):
            return None
        number = schema_id.split(":", 1)[1]
        response = requests.get(f"{base}/schemas/ids/{number}", timeout=timeout_s)
        status = response.status_code
        if status == 404:
            raise UnknownSchema(f"the Schema Registry at {base} has no schema with id {number} (HTTP 404: "
                                f"{_reason(response)}); register it, then replay the dead letter")
        if status in (401, 403):
            raise SchemaRegistryRefused(
                f"the Schema Registry at {base} refused the worker (HTTP {status}: {_reason(response)}): check "
                "WORKER_KAFKA__SCHEMA_REGISTRY_URL and the registry's credentials and permissions")
        if 400 <= status < 500 and status not in (408, 429):
            raise SchemaRegistryRefused(
                f"the Schema Registry at {base} refused the request for schema id {number} "
                f"(HTTP {status}: {_reason(response)})")
        response.raise_for_status()  # 5xx, 408, 429: requests.HTTPError, retried as transient
        schema: str = response.json()["schema"]
        return schema

    return fetch


def _reason(response: Any) -> str:
    """The registry's `message` field, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "")[:200]
    return str(body.get("message") if isinstance(body, dict) and body.get("message") else body)[:200]


def first_of(*fetchers: Callable[[str], str | None] | None) -> Callable[[str], str | None]:
    """Ask each source in turn; the first that knows the id answers."""

    def fetch(schema_id: str) -> str | None:
        for source in fetchers:
            found = source(schema_id) if source is not None else None
            if found is not None:
                return found
        return None

    return fetch
