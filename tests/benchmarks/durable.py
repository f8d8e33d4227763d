"""The benchmark's own durable PostgreSQL: a cluster started by deploy/stack.py for the run (its own STACK_DIR and
port, STACK_PG_DURABLE=1: fsync, synchronous_commit and full_page_writes on), stopped and removed at the end.

BENCH_DB=durable (the default) starts it; BENCH_DB=given measures against DATABASE_URL as it is (the settings it
runs with are printed either way: a dev server with fsync off flatters every figure that commits)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.benchmarks.common import log

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "deploy" / "stack.py"
SETTINGS = ("fsync", "synchronous_commit", "full_page_writes", "wal_level", "shared_buffers", "wal_sync_method")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(STACK), *args], env=env, capture_output=True, text=True, timeout=180)


@contextlib.contextmanager
def durable_postgres(given_url: str) -> Iterator[str]:
    """The URL of a durable cluster started for this run (BENCH_DB=durable), else ``given_url``."""
    if os.environ.get("BENCH_DB", "durable").lower() == "given":
        yield given_url
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    folder.chmod(0o755)  # the server runs as `postgres` when we are root
    port = _free_port()
    env = {**os.environ, "STACK_DIR": str(folder), "STACK_PG_PORT": str(port), "STACK_PG_DURABLE": "1"}
    log(f"starting a durable PostgreSQL for this run on 127.0.0.1:{port} ({folder})")
    started = _stack(env, "up", "postgres")
    if started.returncode != 0:
        _stack(env, "clean")
        raise RuntimeError(f"the durable PostgreSQL did not start: {started.stderr[-2000:]}")
    try:
        yield f"postgresql://worker@127.0.0.1:{port}/worker"
    finally:
        cleaned = _stack(env, "clean")
        if cleaned.returncode != 0:
            log(f"could not remove the durable PostgreSQL ({folder}): {cleaned.stderr[-500:]}")


def server_settings(url: str) -> dict[str, Any]:
    """What the server measured under says (SHOW), for the report."""
    with psycopg.connect(url) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SETTINGS}  # type: ignore[index]
