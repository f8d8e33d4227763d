"""What operators see of a running worker: `/metrics` counts what it processed (and the poison it dead-lettered)
with consumer lag going to zero; `/readyz` is not ready without partitions, and turns unready when PostgreSQL
cannot be reached (cut by a TCP proxy), ready again when it returns."""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.error
import urllib.request
from typing import Any

from tests.cdc_factory import CdcFactory
from tests.conftest import wait_for
from tests.e2e.conftest import Cli, stop
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import produce

GOOD = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample whose labels include ``labels`` (summed when several match)."""
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match[1] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total, found = total + float(match[2]), True
    return total if found else None


def test_metrics_count_what_was_processed_and_lag_drains(cli: Cli, worker_env: dict[str, str]) -> None:
    f = CdcFactory()
    topic = worker_env["WORKER_KAFKA__CDC_TOPIC"]
    produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], topic,
            [f.create(f"001{n:012d}AAA") for n in range(GOOD)] + [(b"001999999999999AAA", b"{poison")])
    port = free_port()
    worker = cli.start("run", "all", WORKER_OBSERVABILITY__METRICS_PORT=str(port))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        def settled() -> str | None:
            status, text = get(url)
            if status != 200:
                return None
            lags = [v for k, v in lag_samples(text).items() if k[0] == worker_env["WORKER_KAFKA__INGEST_GROUP"]]
            done = (sample(text, "worker_messages_total", topic=topic) == GOOD + 1
                    and sample(text, "worker_events_projected_total", verdict="applied") == GOOD
                    and lags and all(v == 0 for v in lags))
            return text if done else None

        text = wait_for(settled, timeout_s=120, what="metrics to show every message processed and no lag")
    finally:
        worker.send_signal(signal.SIGTERM)
        code, err = stop(worker)
    assert code == 0, err[-2000:]
    assert sample(text, "worker_dead_letters_total", topic=topic, stage="parse") == 1
    assert sample(text, "worker_commands_total", command="RegisterClient", outcome="ok") == GOOD
    assert sample(text, "worker_events_appended_total") == GOOD
    assert sample(text, "worker_events_published_total") == GOOD
    # command durations are tallied per batch: one observation (the mean) per batch, type and outcome
    assert 1 <= (sample(text, "worker_command_duration_seconds_count", command="RegisterClient") or 0) <= GOOD
    assert sample(text, "worker_outbox_backlog") is not None and sample(text, "worker_projector_freshness_seconds")


def lag_samples(text: str) -> dict[tuple[str, str, str], float]:
    found = {}
    for line in text.splitlines():
        if line.startswith("worker_consumer_lag{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            found[(labels["group"], labels["topic"], labels["partition"])] = float(line.rsplit(" ", 1)[1])
    return found


def ready(port: int) -> tuple[int, dict[str, Any]]:
    status, body = get(f"http://127.0.0.1:{port}/readyz")
    return status, (json.loads(body) if body.startswith("{") else {})


def test_readiness_needs_partitions_and_the_database(
    cli: Cli, worker_env: dict[str, str], database_url: str
) -> None:
    host_port = database_url.split("@", 1)[1].split("/", 1)[0]
    host, db_port = host_port.split(":")
    single = {**worker_env, "WORKER_KAFKA__PARTITIONS": "1",
              "WORKER_KAFKA__CDC_TOPIC": worker_env["WORKER_KAFKA__CDC_TOPIC"] + "-single"}
    cli("topics", "create", **single)
    with TcpProxy(host, int(db_port)) as proxy:
        proxied = database_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        ports = [free_port(), free_port()]
        workers = [cli.start("run", "ingest", **{**single, "WORKER_POSTGRES__URL": proxied,
                                                 "WORKER_OBSERVABILITY__HEALTH_PORT": str(p)}) for p in ports]
        try:
            # one partition, two members: exactly one is ready, the other says why it is not
            def split() -> tuple[int, int] | None:
                states = [ready(p)[0] for p in ports]
                return (ports[states.index(200)], ports[states.index(503)]) if sorted(states) == [200, 503] else None

            owner, idle = wait_for(split, timeout_s=90, what="one ready member and one without partitions")
            checks = ready(idle)[1]["checks"]
            assert not checks[f"{single['WORKER_KAFKA__INGEST_GROUP']} partitions"]["ok"]
            assert checks["database"]["ok"]
            assert get(f"http://127.0.0.1:{idle}/healthz")[0] == 200  # alive, just not needed

            proxy.cut()
            wait_for(lambda: ready(owner)[0] == 503, timeout_s=30, what="unready once PostgreSQL is cut")
            assert not ready(owner)[1]["checks"]["database"]["ok"]
            assert get(f"http://127.0.0.1:{owner}/healthz")[0] == 200  # an outage is not a reason to restart
            proxy.restore()
            wait_for(lambda: ready(owner)[0] == 200, timeout_s=30, what="ready again once PostgreSQL is back")
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            results = [stop(w) for w in workers]
    assert [code for code, _ in results] == [0, 0], [err[-1500:] for _, err in results]
