"""The chaos test's own Kafka + PostgreSQL (deploy/stack.py in its own folder, on its own ports, PostgreSQL
durable), and the faults it inflicts on them: a PostgreSQL `pg_ctl stop -m immediate` and a `kill -9` of the
broker, each followed by a restart. Only processes this stack started are signalled (the PID files it wrote)."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
STACK_PY = ROOT / "deploy" / "stack.py"


class StackFailed(Exception):
    """The chaos stack did not start, stop or restart."""


@dataclass(frozen=True)
class ChaosStack:
    folder: Path
    kafka_port: int
    controller_port: int
    pg_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def url(self, database: str = "worker", port: int | None = None) -> str:
        return f"postgresql://worker@127.0.0.1:{port or self.pg_port}/{database}"

    def _stack(self, *args: str) -> None:
        env = {
            **os.environ, "STACK_DIR": str(self.folder), "STACK_KAFKA_PORT": str(self.kafka_port),
            "STACK_KAFKA_CONTROLLER_PORT": str(self.controller_port), "STACK_PG_PORT": str(self.pg_port),
            "STACK_PG_DURABLE": "1",
        }
        result = subprocess.run([sys.executable, str(STACK_PY), *args], env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise StackFailed(f"stack.py {' '.join(args)} failed:\n{(result.stdout + result.stderr)[-3000:]}")

    def up(self) -> None:
        self._stack("up")
        if not self.durable():  # a server left running from an earlier run, started otherwise: start it again
            self._stack("down", "postgres")
            self._stack("up")
            if not self.durable():
                raise StackFailed("the chaos stack's PostgreSQL is not durable (fsync/synchronous_commit/fpw)")

    def down(self) -> None:
        self._stack("down")

    def durable(self) -> bool:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            values = [conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                      for name in ("fsync", "synchronous_commit", "full_page_writes")]
        return values == ["on", "on", "on"]

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    # -- faults ------------------------------------------------------------------------------------------------

    def restart_postgres_immediately(self) -> None:
        """`pg_ctl stop -m immediate` (no checkpoint, crash recovery on start), then start it again."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            data = conn.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
        cmd = ["pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", "60"]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", pwd.getpwnam("postgres").pw_name, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")
        if result.returncode != 0:
            raise StackFailed(f"pg_ctl stop -m immediate failed: {result.stderr or result.stdout}")
        self._stack("up")

    def kill_broker(self) -> int:
        """`kill -9` of the broker this stack started (its PID file); returns the PID."""
        pid_file = self.folder / "kafka" / "kafka.pid"
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"kafka.Kafka" not in cmdline or str(self.folder).encode() not in cmdline:
            raise StackFailed(f"pid {pid} in {pid_file} is not this stack's broker")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the JVM's exit is not something to wait on more cleverly: it is not our child
        return pid

    def start_broker(self) -> None:
        self._stack("up")
