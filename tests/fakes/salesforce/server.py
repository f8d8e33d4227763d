"""FakeSalesforce: the fake org behind a real HTTP server on 127.0.0.1, with auth, the daily API limit and
scripted faults. Only what Salesforce itself would answer; the resources live in `resources.py`."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakes.salesforce.describe import AccountDescribe
from tests.fakes.salesforce.org import START, AccountStore
from tests.fakes.salesforce.resources import AccountResources, Answer, error

MAX_URI = 16_384
UNAVAILABLE_HTML = "<html><head><title>Service Unavailable</title></head><body>Maintenance</body></html>"
_DATA = re.compile(r"^/services/data/v(\d+\.\d)/(.*)$")


@dataclass
class Fault:
    status: int | None  # None: answer normally, after the delay
    body: Any
    delay_s: float = 0.0


class FakeSalesforce:
    """with FakeSalesforce(custom_fields={"Region__c": "string"}) as sf: sf.generate(100_000); ... sf.url"""

    def __init__(self, *, port: int = 0, page_size: int = 2000, vary_pages: bool = False,
                 custom_fields: Mapping[str, str] | None = None, person_accounts: bool = False,
                 daily_limit: int = 100_000, bulk_polls: int = 2, bulk_page_size: int = 50_000,
                 now: datetime = START) -> None:
        self.store = AccountStore(AccountDescribe(custom_fields, person_accounts), now)
        self.api = AccountResources(self.store, page_size, vary_pages, bulk_polls, bulk_page_size)
        self.schemas: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []
        self.api_used, self.daily_limit = 0, daily_limit
        self._faults: dict[str, deque[Fault]] = {}
        self._down = self._refuse_logins = False
        self._revoked: set[str] = set()
        self._seen_tokens: set[str] = set()
        self._tokens = itertools.count(1)
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name="fake-salesforce")

    def __enter__(self) -> FakeSalesforce:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- the org's data ----------------------------------------------------------------------------------------

    def add(self, record_id: str, deleted: bool = False, **fields: Any) -> dict[str, Any]:
        with self._lock:
            return self.store.add(record_id, deleted, **fields)

    def generate(self, n: int, seed: int = 0, prefix: str = "G") -> list[str]:
        with self._lock:
            return self.store.generate(n, seed, prefix)

    def update(self, record_id: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            return self.store.update(record_id, **fields)

    def delete(self, record_id: str) -> None:
        with self._lock:
            self.store.delete(record_id)

    def merge(self, master_id: str, loser_id: str) -> None:
        with self._lock:
            self.store.merge(master_id, loser_id)

    def record(self, record_id: str) -> dict[str, Any] | None:
        return self.store.get(record_id)

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            return self.store.advance(seconds)

    def set_time(self, now: datetime) -> None:
        with self._lock:
            self.store.now = now

    # -- scripted faults ---------------------------------------------------------------------------------------

    def fail_next(self, kind: str, status: int, times: int = 1, body: Any = None, delay_s: float = 0.0) -> None:
        """The next ``times`` requests of ``kind`` (see `kind_of`, or "any") answer ``status`` with ``body``
        (default: Salesforce's error array; a str is sent as HTML)."""
        default = [{"errorCode": "SERVER_UNAVAILABLE" if status >= 500 else "ERROR", "message": "scripted"}]
        self._script(kind, [Fault(status, body if body is not None else default, delay_s) for _ in range(times)])

    def unavailable(self, kind: str = "any", times: int = 1) -> None:
        """503 with a CDN's HTML page, not JSON (maintenance)."""
        self.fail_next(kind, 503, times, body=UNAVAILABLE_HTML)

    def slow(self, kind: str, delay_s: float, times: int = 1) -> None:
        self._script(kind, [Fault(None, None, delay_s) for _ in range(times)])

    def expire_session(self) -> None:
        """Every token issued or seen so far is now invalid: 401 INVALID_SESSION_ID until a new login."""
        with self._lock:
            self._revoked |= self._seen_tokens

    def revoke(self, *tokens: str) -> None:
        """These session ids (e.g. one configured with auth=session) answer 401 INVALID_SESSION_ID."""
        with self._lock:
            self._revoked.update(tokens)

    def accept_sessions(self) -> None:
        """Revoked session ids work again (an operator fixed the credentials)."""
        with self._lock:
            self._revoked.clear()

    def refuse_logins(self, refuse: bool = True) -> None:
        self._refuse_logins = refuse

    def exceed_limit(self) -> None:
        self.api_used = self.daily_limit

    def fail_next_job(self, message: str = "InternalServerError: the query job failed") -> None:
        """The next Bulk query job ends Failed with this errorMessage."""
        with self._lock:
            self.api.fail_jobs.append(message)

    def down(self) -> None:
        self._down = True

    def up(self) -> None:
        self._down = False

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.requests if k == kind)

    def _script(self, kind: str, faults: list[Fault]) -> None:
        with self._lock:
            self._faults.setdefault(kind, deque()).extend(faults)

    # -- answering ---------------------------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: Any) -> tuple[Answer, float]:
        parsed = urlparse(target)
        path, params = parsed.path, {k: v[0] for k, v in parse_qs(parsed.query).items()}
        kind = kind_of(method, path)
        with self._lock:
            self.requests.append((kind, path))
            queue = self._faults.get(kind) or self._faults.get("any")
            fault = queue.popleft() if queue else None
        if self._down:
            return (503, UNAVAILABLE_HTML, {}), 0.0
        if fault is not None and fault.status is not None:
            return (fault.status, fault.body, {}), fault.delay_s
        delay = fault.delay_s if fault is not None else 0.0
        if kind == "token":
            return self._token(body), delay
        with self._lock:
            answer = self._authorized(method, path, params, headers, body)
            limit_info = f"api-usage={self.api_used}/{self.daily_limit}"
        status, payload, extra = answer
        return (status, payload, {**extra, "Sforce-Limit-Info": limit_info}), delay

    def _authorized(self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str],
                    body: Any) -> Answer:
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not token or token in self._revoked:
            return error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        self._seen_tokens.add(token)
        if self.api_used >= self.daily_limit:
            return error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        self.api_used += 1
        match = _DATA.match(path)
        if match is None:
            return error(404, "NOT_FOUND", "The requested resource does not exist")
        return self._route(method, match[1], match[2].rstrip("/"), params, headers, body)

    def _route(self, method: str, version: str, rest: str, params: dict[str, str], headers: Mapping[str, str],
               body: Any) -> Answer:
        parts = rest.split("/")
        batch = _batch_size(headers.get("sforce-query-options", ""))
        api = self.api
        if parts == ["sobjects", "Account", "describe"]:
            return api.describe()
        if parts[:2] == ["sobjects", "Account"] and len(parts) == 3 and parts[2] in ("updated", "deleted"):
            return api.replicated(parts[2], params.get("start"), params.get("end"))
        if parts[:2] == ["sobjects", "Account"] and len(parts) == 3 and method == "GET":
            return api.row(version, parts[2], params.get("fields"))
        if parts in (["query"], ["queryAll"]) and method == "GET":
            return api.query(version, params.get("q", ""), parts[0] == "queryAll", batch)
        if parts[0] == "query" and len(parts) == 2:
            return api.query_more(version, parts[1], batch)
        if parts == ["composite", "sobjects", "Account"] and method == "POST":
            return api.collection(version, body)
        if parts == ["jobs", "query"] and method == "POST":
            return api.create_job(version, body)
        if parts[:2] == ["jobs", "query"] and len(parts) == 3:
            return api.job(parts[2], method, body)
        if parts[:2] == ["jobs", "query"] and len(parts) == 4 and parts[3] == "results":
            return api.results(parts[2], params.get("locator"), params.get("maxRecords"))
        if parts[:2] == ["event", "eventSchema"] and len(parts) == 3:
            schema = self.schemas.get(parts[2])
            return (200, schema, {}) if schema else error(404, "NOT_FOUND", "The requested resource does not exist")
        if parts == ["limits"]:
            return api.limits(self.api_used, self.daily_limit)
        return error(404, "NOT_FOUND", "The requested resource does not exist")

    def _token(self, form: Any) -> Answer:
        """OAuth token endpoint (client credentials, password): errors are an object, not the REST array."""
        grant = form.get("grant_type", "") if isinstance(form, dict) else ""
        if self._refuse_logins or grant not in ("client_credentials", "password"):
            return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}, {}
        token = f"00DFAKE!{next(self._tokens)}"
        return 200, {"access_token": token, "instance_url": self.url, "token_type": "Bearer",
                     "id": f"{self.url}/id/00D000000000001AAA/005000000000001AAA", "issued_at": "0"}, {}


def kind_of(method: str, path: str) -> str:
    """The name of a request for `fail_next` and `count`: token, describe, sobjects, updated, deleted, query,
    queryAll, queryMore, composite, bulk, bulkJob, bulkResults, eventSchema, limits, other."""
    if path.endswith("/oauth2/token"):
        return "token"
    match = _DATA.match(path)
    parts = match[2].rstrip("/").split("/") if match else []
    if parts[:1] == ["jobs"]:
        return {2: "bulk", 3: "bulkJob", 4: "bulkResults"}.get(len(parts), "other")
    if parts[:1] == ["composite"]:
        return "composite"
    if parts[:2] == ["sobjects", "Account"] and len(parts) == 3:
        return parts[2] if parts[2] in ("describe", "updated", "deleted") else "sobjects"
    if parts[:1] == ["query"] and len(parts) == 2:
        return "queryMore"
    if parts in (["query"], ["queryAll"], ["limits"]):
        return parts[0]
    if parts[:2] == ["event", "eventSchema"]:
        return "eventSchema"
    return "other"


def _batch_size(options: str) -> int | None:
    match = re.search(r"batchSize=(\d+)", options)
    return min(max(int(match[1]), 200), 2000) if match else None


def _handler(fake: FakeSalesforce) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            header_bytes = sum(len(k) + len(v) + 4 for k, v in self.headers.items())
            if len(self.path) > MAX_URI or len(self.path) + header_bytes > MAX_URI:
                status = 414 if len(self.path) > MAX_URI else 431
                return self._send(status, "<html><body>Request-URI Too Long</body></html>", {}, method)
            body: Any = None
            if raw and "json" in (self.headers.get("Content-Type") or ""):
                body = json.loads(raw)
            elif raw:
                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            (status, payload, extra), delay = fake.answer(method, self.path, headers, body)
            if delay:
                time.sleep(delay)
            self._send(status, payload, extra, method)

        def _send(self, status: int, payload: Any, headers: dict[str, str], method: str) -> None:
            if isinstance(payload, str):
                data = payload.encode()
                headers.setdefault("Content-Type", "text/html" if payload.startswith("<") else "text/plain")
            else:
                data = b"" if payload is None else json.dumps(payload).encode()
                headers.setdefault("Content-Type", "application/json;charset=UTF-8")
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PATCH(self) -> None:
            self._answer("PATCH")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def log_message(self, *_: Any) -> None:
            return

    return Handler
