"""The chaos test, short: 5,000 changes, 6 kill -9s, one PostgreSQL immediate restart, one broker kill -9, one
frozen relay connection, on its own durable stack (never the one the other tests share); `make chaos` is the long
one. See tests/chaos/run.py for what is compared."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.chaos.stack import ChaosStack
from tests.e2e.conftest import ROOT

SHORT = {
    "CHAOS_CHANGES": "5000", "CHAOS_KILLS": "6", "CHAOS_SEED": "11", "CHAOS_PG_RESTARTS": "1",
    "CHAOS_BROKER_RESTARTS": "1", "CHAOS_FREEZES": "1", "CHAOS_DEADLINE_S": "240",
    "CHAOS_STACK_DIR": ".chaos-stack-short",
    "CHAOS_KAFKA_PORT": "27092", "CHAOS_KAFKA_CONTROLLER_PORT": "27093", "CHAOS_PG_PORT": "23432",
}


# The run's own deadline (CHAOS_DEADLINE_S, per wait) ends a stalled run first: the driver then reports what did not
# converge and stops its stack. pytest's timeout (which kills the driver, leaving its servers running) comes after.
@pytest.mark.timeout(600)
def test_kills_and_outages_under_load_end_in_the_same_state_as_a_clean_run() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "CHAOS_", "STACK_"))}
    env.update({k: os.environ.get(f"SHORT_{k}", v) for k, v in SHORT.items()})  # SHORT_CHAOS_*: other ports
    try:
        result = subprocess.run([sys.executable, "-m", "tests.chaos"], env={**env, "PYTHONPATH": str(ROOT)},
                                cwd=ROOT, capture_output=True, text=True, timeout=570, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # the driver was killed: stop the servers it started
        ChaosStack((ROOT / env["CHAOS_STACK_DIR"]).resolve(), int(env["CHAOS_KAFKA_PORT"]),
                   int(env["CHAOS_KAFKA_CONTROLLER_PORT"]), int(env["CHAOS_PG_PORT"])).down()
        text = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part
                       for part in (exc.stdout or "", exc.stderr or ""))
        pytest.fail(f"the chaos run did not end in 570 s:\n{text[-8000:]}")
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"the chaos run failed:\n{report[-8000:]}"
    assert "PASSED: the same end state" in report
    assert "6 kill -9 of workers" in report and "1 PostgreSQL immediate restart" in report
    assert "1 broker kill -9 + restart" in report and "1 frozen relay connection" in report
