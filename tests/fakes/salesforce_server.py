"""A local HTTP server that answers like Salesforce's REST API, over real sockets, with programmable faults.

    with FakeSalesforce(accounts) as sf: ... sf.url ... sf.fail_next("query", 503, times=2) ... sf.down()

Also runs standalone for the demo: `python -m tests.fakes.salesforce_server --port N --seed-file F`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_IN = re.compile(r"Id\s+IN\s*\(([^)]*)\)", re.IGNORECASE)
PAGE = 2


@dataclass
class Fault:
    status: int
    body: Any
    delay_s: float = 0.0


@dataclass
class FakeSalesforce:
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    schemas: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    page_size: int = PAGE
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._faults: dict[str, deque[Fault]] = {}
        self._down = False
        self._cursors: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-salesforce")

    def __enter__(self) -> FakeSalesforce:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- programming the fake ------------------------------------------------------------------------------------

    def add(self, record_id: str, deleted: bool = False, **fields: Any) -> None:
        record = {"Id": record_id, "IsDeleted": deleted, "LastModifiedDate": "2026-11-24T10:00:00.000+0000",
                  **fields}
        self.accounts[record_id] = record

    def fail_next(self, kind: str, status: int, times: int = 1, body: Any = None, delay_s: float = 0.0) -> None:
        """The next ``times`` requests of ``kind`` (sobjects, query, queryAll, eventSchema, any) fail so."""
        default = [{"errorCode": "SERVER_UNAVAILABLE" if status >= 500 else "ERROR", "message": "scripted"}]
        with self._lock:
            queue = self._faults.setdefault(kind, deque())
            queue.extend(Fault(status, body if body is not None else default, delay_s) for _ in range(times))

    def down(self) -> None:
        self._down = True

    def up(self) -> None:
        self._down = False

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.requests if k == kind)

    # -- answering -----------------------------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any, float]:
        kind = _kind(path)
        with self._lock:
            self.requests.append((kind, path))
            queue = self._faults.get(kind) or self._faults.get("any")
            fault = queue.popleft() if queue else None
        if self._down:
            return 503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "down"}], 0.0
        if fault is not None:
            return fault.status, fault.body, fault.delay_s
        if kind == "sobjects":
            record = self.accounts.get(path.rsplit("/", 1)[-1])
            if record is None or record.get("IsDeleted"):
                return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}], 0.0
            return 200, {"attributes": {"type": "Account"}, **record}, 0.0
        if kind in ("query", "queryAll"):
            return 200, self._query(kind, path, query), 0.0
        if kind == "queryMore":
            return 200, self._page(self._cursors.pop(path.rsplit("/", 1)[-1], []), path), 0.0
        if kind == "eventSchema":
            schema = self.schemas.get(path.rsplit("/", 1)[-1])
            return (200, schema, 0.0) if schema else (404, [{"errorCode": "NOT_FOUND", "message": "no"}], 0.0)
        if kind == "token":
            return 200, {"access_token": "fake-token", "instance_url": self.url, "token_type": "Bearer"}, 0.0
        return 404, [{"errorCode": "NOT_FOUND", "message": path}], 0.0

    def _query(self, kind: str, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        soql = query.get("q", [""])[0]
        match = _IN.search(soql)
        ids = [i.strip().strip("'") for i in match[1].split(",")] if match else list(self.accounts)
        records = [self.accounts[i] for i in ids if i in self.accounts]
        if kind == "query":
            records = [r for r in records if not r.get("IsDeleted")]
        return self._page([r["Id"] for r in records], path)

    def _page(self, ids: list[str], path: str) -> dict[str, Any]:
        head, rest = ids[: self.page_size], ids[self.page_size :]
        base = path.split("/query")[0]
        page = {
            "totalSize": len(ids),
            "done": not rest,
            "records": [{"attributes": {"type": "Account"}, **self.accounts[i]} for i in head],
        }
        if rest:
            with self._lock:
                token = f"01gFAKE{len(self._cursors) + len(self.requests)}-{self.page_size}"
                self._cursors[token] = rest
            page["nextRecordsUrl"] = f"{base}/query/{token}"
        return page


def _kind(path: str) -> str:
    if "/oauth2/token" in path:
        return "token"
    if "/sobjects/" in path:
        return "sobjects"
    if "/eventSchema/" in path:
        return "eventSchema"
    if "/query/01gFAKE" in path:
        return "queryMore"
    if path.endswith("/queryAll"):
        return "queryAll"
    if path.endswith("/query"):
        return "query"
    return "other"


def _handler(fake: FakeSalesforce) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            parsed = urlparse(self.path)
            path = parsed.path
            if "/query/01gFAKE" in path:
                path = path.replace("01g-", "01g-", 1)
            status, body, delay = fake.answer(method, path.replace("01g-", "01g-"), parse_qs(parsed.query))
            if delay:
                time.sleep(delay)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer("POST")

        def log_message(self, *_: Any) -> None:
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="a local fake of Salesforce's REST API")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed-file", help="JSON list of Account REST records")
    args = parser.parse_args()
    fake = FakeSalesforce(port=args.port)
    if args.seed_file:
        with open(args.seed_file, encoding="utf-8") as f:
            for record in json.load(f):
                fake.accounts[record["Id"]] = record
    with fake:
        print(f"fake Salesforce on {fake.url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
