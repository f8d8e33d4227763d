"""`kill -9` of the worker mid-batch, then a restart: every change applied exactly once."""

from __future__ import annotations

import signal
import time

from tests.cdc_factory import CdcFactory
from tests.conftest import wait_for
from tests.e2e.conftest import Cli, stop
from tests.harness import event_count, produce, rows

ROUNDS = 10  # updates per client after its create


def test_kill_9_mid_run_then_restart_applies_every_change_exactly_once(cli: Cli, worker_env: dict[str, str]) -> None:
    f = CdcFactory()
    clients = [f"001{n:012d}AAA" for n in range(150)]
    changes = [f.create(cid) for cid in clients]
    for round_ in range(ROUNDS):
        changes += [f.update(cid, Phone=f"+1 {round_}{cid[-6:]}") for cid in clients]
    produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"], changes)
    dsn = worker_env["WORKER_POSTGRES__URL"]

    first = cli.start("run", "ingest", WORKER_KAFKA__BATCH_SIZE="40")
    # Killed right after its first batches: ingest takes the whole topic in well under a second once it runs, so
    # a poll that backs off (wait_for) could see it only when it was done.
    deadline = time.monotonic() + 120
    while event_count(dsn) < 40 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    assert 0 < event_count(dsn) < len(changes)

    code, err = stop(cli.start("run", "ingest", "--exit-when-idle", "3", WORKER_KAFKA__BATCH_SIZE="40"), 240)
    assert code == 0, err[-2000:]
    assert event_count(dsn) == len(changes)
    versions = rows(dsn, "SELECT stream_id, array_agg(version ORDER BY version) FROM events GROUP BY 1")
    assert len(versions) == len(clients) and all(v == list(range(1, ROUNDS + 2)) for _, v in versions)


def test_sigterm_finishes_the_batch_commits_and_exits_zero(cli: Cli, worker_env: dict[str, str]) -> None:
    f = CdcFactory()
    produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"],
            [f.create(f"001{n:012d}AAA") for n in range(30)])
    dsn = worker_env["WORKER_POSTGRES__URL"]
    worker = cli.start("run", "ingest")
    wait_for(lambda: event_count(dsn) == 30, timeout_s=120, what="30 events")
    worker.send_signal(signal.SIGTERM)
    code, err = stop(worker)
    assert code == 0, err[-2000:]
    group = worker_env["WORKER_KAFKA__INGEST_GROUP"]
    shown = cli("offsets", "show", "--group", group, "--json")
    assert '"lag": 0' in shown.stdout.replace(" ", "").replace('"lag":0', '"lag": 0')
