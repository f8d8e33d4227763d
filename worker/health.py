"""Health endpoints of a worker process, used by the probes.

`/healthz` (liveness): every loop of the process beat recently: it is not stuck. A loop waiting out a
database or broker outage still beats, so an outage does not get the pod restarted.
`/readyz` (readiness): every role can work: a consumer has partitions assigned, the database answers.
Both answer JSON with each check; 200 when all pass, 503 otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from worker.config import SettingsError

log = logging.getLogger("worker.health")

Check = Callable[[], tuple[bool, str]]


class Heartbeat:
    """Beaten by a loop on every turn (and while it waits between retries)."""

    def __init__(self, max_silence_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_silence_s = max_silence_s
        self._clock = clock
        self._last = clock()

    def beat(self, *_: Any) -> None:
        self._last = self._clock()

    def check(self) -> tuple[bool, str]:
        silent = self._clock() - self._last
        return silent <= self._max_silence_s, f"last beat {silent:.1f}s ago (limit {self._max_silence_s:.0f}s)"


class Cached:
    """A check run at most once per `ttl_s` (probes and scrapes must not hammer the database)."""

    def __init__(self, check: Check, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._check = check
        self._ttl_s = ttl_s
        self._clock = clock
        self._at = -1e18
        self._result: tuple[bool, str] = (False, "not checked yet")
        self._lock = threading.Lock()

    def __call__(self) -> tuple[bool, str]:
        with self._lock:
            if self._clock() - self._at >= self._ttl_s:
                try:
                    self._result = self._check()
                except Exception as exc:  # a failing check is an unready answer, never a crash of the server
                    self._result = (False, f"{type(exc).__name__}: {exc}")
                self._at = self._clock()
            return self._result


class Health:
    def __init__(self) -> None:
        self._live: dict[str, Check] = {}
        self._ready: dict[str, Check] = {}
        self._server: ThreadingHTTPServer | None = None

    def liveness(self, name: str, check: Check) -> None:
        self._live[name] = check

    def readiness(self, name: str, check: Check) -> None:
        self._ready[name] = check

    def report(self, kind: str) -> tuple[bool, dict[str, Any]]:
        checks = self._live if kind == "live" else self._ready
        results = {name: check() for name, check in list(checks.items())}
        ok = all(passed for passed, _ in results.values())
        return ok, {"status": "ok" if ok else "fail",
                    "checks": {name: {"ok": passed, "detail": detail} for name, (passed, detail) in results.items()}}

    def serve(self, address: str, port: int) -> int:
        """Serve /healthz and /readyz on a daemon thread; return the bound port."""
        self._server = ThreadingHTTPServer((address, port), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()
        bound = int(self._server.server_address[1])
        log.info("health on http://%s:%d/healthz and /readyz", address, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            kind = {"/healthz": "live", "/readyz": "ready"}.get(self.path.split("?")[0])
            if kind is None:
                self.send_error(404, "try /healthz or /readyz")
                return
            ok, body = health.report(kind)
            data = json.dumps(body).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:  # probes every few seconds are not worth a log line
            pass

    return Handler


def database_check(pool: Any, timeout_s: float = 2.0) -> Check:
    """The database answers `SELECT 1` within the timeout (psycopg pool)."""

    def check() -> tuple[bool, str]:
        if pool.closed:  # pools open lazily: a probe may come before the first batch
            pool.open(wait=False)
        with pool.connection(timeout=timeout_s) as conn:
            conn.execute("SELECT 1")
        return True, "database answers"

    return Cached(check)


def assignment_check(consumer: Any) -> Check:
    def check() -> tuple[bool, str]:
        owned = sorted(consumer.assignment)
        if not owned:
            return False, "no partitions assigned (joining the group, or more replicas than partitions)"
        return True, f"{len(owned)} partition(s): " + ", ".join(f"{t}[{p}]" for t, p in owned[:8])

    return check


class DatabaseNotDurable(SettingsError):
    """WORKER_POSTGRES__REQUIRE_DURABLE is set and the database is not durable, or could not be checked."""


class DurabilityGate:
    """The database's durability, checked once at start: a non-durable server is one warning and a gauge at 0,
    or a refusal to start when `required`. As a readiness check it reports the verdict but passes (a test stack
    runs without fsync on purpose); one that could not be read at start is read again, at most every `retry_s`."""

    def __init__(self, read: Callable[[], Any], required: bool, report: Callable[[bool], None],
                 retry_s: float = 30.0, wait_s: float = 300.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._read = read
        self._required = required
        self._report = report
        self._wait_s = wait_s  # required: how long an unreachable server (a restart, crash recovery) is waited out
        self._sleep = sleep
        self._retry = Cached(self._read_late, ttl_s=retry_s)
        self.verdict: Any = None

    def start(self) -> None:
        """Read and judge the settings; raise DatabaseNotDurable when required and not (known to be) durable."""
        waited, delay = 0.0, 0.5
        while True:
            try:
                verdict = self._read()
                break
            except Exception as exc:  # unreachable: the loops wait it out; the readiness check reads again later
                if not self._required:
                    log.warning("PostgreSQL durability not checked yet: %s", _one_line(exc))
                    return
                if waited >= self._wait_s:  # an outage is waited out, like any transient fault, up to a bound
                    raise DatabaseNotDurable(
                        f"cannot check that PostgreSQL is durable after {waited:.0f}s, and "
                        f"WORKER_POSTGRES__REQUIRE_DURABLE is set: {_one_line(exc)}") from None
                log.warning("PostgreSQL durability cannot be checked yet (%s); WORKER_POSTGRES__REQUIRE_DURABLE is "
                            "set: trying again in %.1fs", _one_line(exc), delay)
                self._sleep(delay)
                waited, delay = waited + delay, min(delay * 2, 10.0)
        self._judge(verdict)

    def check(self) -> tuple[bool, str]:
        if self.verdict is None:
            return self._retry()
        return True, self.verdict.describe()

    def _read_late(self) -> tuple[bool, str]:
        self._judge(self._read())
        return True, self.verdict.describe()

    def _judge(self, verdict: Any) -> None:
        self.verdict = verdict
        self._report(verdict.durable)
        if verdict.durable:
            log.info("PostgreSQL is %s", verdict.describe())
            return
        if self._required:
            raise DatabaseNotDurable(f"PostgreSQL is not durable ({', '.join(verdict.unsafe)}) and "
                                     "WORKER_POSTGRES__REQUIRE_DURABLE is set: turn them on, or unset it")
        log.warning("PostgreSQL is %s; set WORKER_POSTGRES__REQUIRE_DURABLE=true to refuse such a server",
                    verdict.describe(), extra={"unsafe_settings": verdict.unsafe})


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else exc!r}"
