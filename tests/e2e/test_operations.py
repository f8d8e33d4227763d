"""Operations through the real CLI: what a live group refuses, dry runs that change nothing, and a reset that
replays input without appending anything new."""

from __future__ import annotations

import json
import signal

from tests.cdc_factory import CdcFactory
from tests.conftest import wait_for
from tests.e2e.conftest import Cli, stop
from tests.harness import event_count, produce


def members(cli: Cli, group: str) -> int:
    shown = cli("offsets", "show", "--group", group, "--json", check=False)
    return len(json.loads(shown.stdout)["members"]) if shown.returncode == 0 else 0


def test_resets_and_rebuilds_are_refused_while_a_group_is_live_and_replay_appends_nothing(
    cli: Cli, worker_env: dict[str, str]
) -> None:
    f = CdcFactory()
    produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"],
            [f.create(f"001{n:012d}AAA") for n in range(10)] + [f.update("001000000000000AAA", Phone="1")])
    ingest_group = worker_env["WORKER_KAFKA__INGEST_GROUP"]
    projector_group = worker_env["WORKER_KAFKA__PROJECTOR_GROUP"]
    dsn = worker_env["WORKER_POSTGRES__URL"]
    live = cli.start("run", "all")
    try:
        wait_for(lambda: event_count(dsn) == 11, timeout_s=120, what="11 events")
        wait_for(lambda: members(cli, ingest_group) and members(cli, projector_group), timeout_s=60,
                 what="both groups to have members")
        refused = cli("offsets", "reset", "--group", ingest_group, "--topic", worker_env["WORKER_KAFKA__CDC_TOPIC"],
                      "--to-earliest", "--execute", check=False)
        assert refused.returncode == 3 and "active member" in refused.stderr
        rebuild = cli("projections", "rebuild", check=False)
        assert rebuild.returncode == 3 and "stop the projectors first" in rebuild.stderr
    finally:
        live.send_signal(signal.SIGTERM)
        code, err = stop(live)
    assert code == 0, err[-2000:]

    dry = json.loads(cli("replay", "ingest", "--to-datetime", "2000-01-01T00:00:00Z", "--json").stdout)
    assert dry["executed"] is False and all(p["new"] == 0 for p in dry["partitions"])
    assert all(p["current"] == p["end"] for p in dry["partitions"] if p["end"])  # the dry run moved nothing
    cli("replay", "ingest", "--to-datetime", "2000-01-01T00:00:00Z", "--execute")
    cli("run", "ingest", "--exit-when-idle", "3", timeout=240)
    assert event_count(dsn) == 11
