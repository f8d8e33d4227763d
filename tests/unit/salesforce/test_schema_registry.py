"""Writer schemas from a Schema Registry, against a local HTTP server: a missing schema dead-letters the record
(typed, once), refused credentials stop the worker with one line, only server faults are retried."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from worker.adapters.salesforce.errors import ChangeEventParseError, UnknownSchema
from worker.adapters.salesforce.event_parser import parse
from worker.adapters.salesforce.schemas import SchemaRegistryRefused, SchemaResolver, registry_fetch
from worker.roles.failures import Kind, classify

SCHEMA = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "string"}]}


class Registry(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: Registry

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        status, body = self.server.answers.get(self.path, (404, {"error_code": 40403, "message": "Schema not found"}))
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: Any) -> None: ...


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_schema_the_registry_has_is_fetched(registry: Registry) -> None:
    registry.answers["/schemas/ids/7"] = (200, {"schema": json.dumps(SCHEMA)})
    assert json.loads(registry_fetch(registry.url)("registry:7") or "") == SCHEMA


def test_a_schema_missing_from_the_registry_is_an_unknown_schema_dead_lettered_at_parse(registry: Registry) -> None:
    resolver = SchemaResolver(fetch=registry_fetch(registry.url))
    framed = b"\x00" + (42).to_bytes(4, "big") + b"\x02a"
    with pytest.raises(UnknownSchema, match="no schema with id 42") as raised:
        parse(framed, fmt="auto", schemas=resolver)
    assert isinstance(raised.value, ChangeEventParseError) and classify(raised.value) is Kind.POISON
    assert registry.requests == ["/schemas/ids/42"]  # asked once, not retried


@pytest.mark.parametrize("status", [401, 403])
def test_a_registry_refusing_our_credentials_is_a_clear_error_not_a_retry(registry: Registry, status: int) -> None:
    registry.answers["/schemas/ids/7"] = (status, {"error_code": status, "message": "Unauthorized"})
    with pytest.raises(SchemaRegistryRefused) as raised:
        registry_fetch(registry.url)("registry:7")
    text = str(raised.value)
    assert f"HTTP {status}" in text and registry.url.rstrip("/") in text and "SCHEMA_REGISTRY_URL" in text
    assert classify(raised.value) is Kind.BUG  # stops the worker; never retried as transient


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_registry_fault_is_transient(registry: Registry, status: int) -> None:
    registry.answers["/schemas/ids/7"] = (status, {"message": "busy"})
    with pytest.raises(Exception) as raised:
        registry_fetch(registry.url)("registry:7")
    assert classify(raised.value) is Kind.TRANSIENT
