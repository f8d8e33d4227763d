"""e2e tests run the real `worker` CLI in subprocesses against the local stack."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = [sys.executable, "-m", "worker.entrypoints.cli"]
ROOT = Path(__file__).resolve().parents[2]


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **env}

    def __call__(
        self, *args: str, timeout: float = 180, check: bool = True, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*WORKER, *args], env={**self.env, **extra_env}, capture_output=True, text=True, timeout=timeout,
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            pytest.fail(f"worker {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
        return result

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*WORKER, *args], env={**self.env, **extra_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT,
        )


@pytest.fixture
def cli(worker_env: dict[str, str]) -> Cli:
    cli = Cli(worker_env)
    cli("topics", "create")
    return cli


def stop(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"the worker did not exit within {timeout}s:\n{err[-3000:]}")
    return process.returncode, err

