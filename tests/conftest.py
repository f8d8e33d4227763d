"""Shared fixtures: hermetic settings, a fresh database and fresh topics per test, bounded waits.

Integration and e2e tests need the real servers: `make test` starts them and sets KAFKA_BOOTSTRAP_SERVERS and
DATABASE_URL. Without those variables, those tests fail with a message saying so (they are never skipped).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import settings

# CI explores the same examples every run (a red CI must be reproducible); locally hypothesis stays random.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No WORKER_* variable or .env file of the developer leaks into a test."""
    for key in list(os.environ):
        if key.startswith("WORKER_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the tests with `make test`, which starts the local stack", False)
    return value


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _required("KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(scope="session")
def server_database_url() -> str:
    return _required("DATABASE_URL")


@pytest.fixture
def new_database(server_database_url: str) -> Iterator[Callable[[], str]]:
    """Make fresh, empty databases (no migration applied) for this test; all are dropped afterwards."""
    import psycopg

    names: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_database_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return _with_database(server_database_url, name)

    yield make
    with psycopg.connect(server_database_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    """A fresh, migrated database for this test, dropped afterwards."""
    from worker.adapters.postgres.migrate import migrate

    url = new_database()
    migrate(url)
    return url


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
def topic_prefix() -> Iterator[str]:
    """Names for this test's topics and groups; whatever the test created under them is deleted afterwards.
    (Left behind, they pile up in the local broker across runs: with some 10 000 partitions its heap stayed
    full and it paused ~0.8 s in full garbage collections every few seconds, which is what the benchmark's
    latency then measured.)"""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        from tests.harness import delete_prefixed

        delete_prefixed(bootstrap, prefix)


@pytest.fixture
def worker_env(kafka_bootstrap: str, database_url: str, topic_prefix: str) -> dict[str, str]:
    """WORKER_* variables of a hermetic worker: its own database, topics and groups."""
    return {
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "WORKER_POSTGRES__URL": database_url,
        "WORKER_KAFKA__CDC_TOPIC": f"{topic_prefix}.salesforce.cdc.account",
        "WORKER_KAFKA__EVENTS_TOPIC": f"{topic_prefix}.client.events",
        "WORKER_KAFKA__INGEST_GROUP": f"{topic_prefix}-ingest",
        "WORKER_KAFKA__PROJECTOR_GROUP": f"{topic_prefix}-projector",
        "WORKER_KAFKA__BATCH_TIMEOUT_S": "0.2",
        "WORKER_RETRY__INITIAL_BACKOFF_S": "0.05",
        "WORKER_RETRY__MAX_BACKOFF_S": "0.5",
        "WORKER_OBSERVABILITY__METRICS_PORT": "0",
        "WORKER_OBSERVABILITY__HEALTH_PORT": "0",
    }


def wait_for(condition: Callable[[], T], timeout_s: float = 30.0, what: str = "condition") -> T:
    """Poll until ``condition()`` is truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
