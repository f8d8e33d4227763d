"""The worker processes of a run: the real `worker run ROLE` CLI in subprocesses, each with a name (`ingest-0`),
its own log file per start, and its PID recorded; killed with SIGKILL by that PID only, and started again.

An exit nobody asked for (a crash, a crash loop) is recorded as a surprise: the run fails on it, after the
process was started again so the rest of the run still says what else went wrong."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.stack import ROOT

WORKER = [sys.executable, "-m", "worker.entrypoints.cli"]
# -X faulthandler: SIGABRT writes every thread's stack to the log (a process that will not stop says where)
RUN = [sys.executable, "-X", "faulthandler", "-m", "worker.entrypoints.cli", "run"]


def run_cli(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """A short `worker` command; its failure is the run's failure."""
    result = subprocess.run([*WORKER, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def base_env(overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    return {**env, "PYTHONPATH": str(ROOT), **overrides}


@dataclass
class Member:
    name: str
    role: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log: Path | None = None


@dataclass
class Fleet:
    logs: Path
    say: Callable[[str], None]
    members: dict[str, Member] = field(default_factory=dict)
    surprises: list[str] = field(default_factory=list)

    def add(self, name: str, role: str, env: dict[str, str]) -> None:
        self.members[name] = Member(name, role, env)
        self.start(name)

    def start(self, name: str) -> None:
        member = self.members[name]
        member.starts += 1
        member.log = self.logs / f"{name}.{member.starts}.log"
        with open(member.log, "wb") as out:
            member.process = subprocess.Popen([*RUN, member.role], env=member.env, cwd=ROOT,
                                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> int:
        """SIGKILL by the recorded PID, reaped; returns the PID."""
        process = self.members[name].process
        assert process is not None
        self.check()  # an exit before our kill is a surprise, not a kill
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        return process.pid

    def pid(self, name: str) -> int:
        process = self.members[name].process
        assert process is not None
        return process.pid

    def check(self) -> None:
        """Record and restart every member that exited on its own."""
        for name, member in self.members.items():
            process = member.process
            if process is None or process.poll() is None:
                continue
            tail = member.log.read_text(errors="replace").strip().splitlines()[-5:] if member.log else []
            self.surprises.append(f"{name} (pid {process.pid}) exited {process.returncode} on its own; "
                                  f"log {member.log}: " + " | ".join(tail)[-1500:])
            self.say(f"SURPRISE {self.surprises[-1]}")
            self.start(name)

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM to every member (graceful: finish the batch, commit); SIGABRT after ``timeout`` (stacks dumped)."""
        self.check()
        for member in self.members.values():
            if member.process is not None and member.process.poll() is None:
                member.process.send_signal(signal.SIGTERM)
        for member in self.members.values():
            if member.process is None:
                continue
            try:
                code = member.process.wait(timeout)
            except subprocess.TimeoutExpired:
                member.process.send_signal(signal.SIGABRT)  # the stacks, into its log
                code = member.process.wait(30)
                self.surprises.append(f"{member.name} (pid {member.process.pid}) did not stop within "
                                      f"{timeout:.0f}s of SIGTERM; its threads' stacks are in {member.log}")
                continue
            if code != 0:
                self.surprises.append(f"{member.name} exited {code} after SIGTERM; log {member.log}")
