"""The relay against the real broker and database: a relay whose database connection freezes (sockets open,
nothing passing) loses its lock within the dead-peer timeout, and a standby takes over."""

from __future__ import annotations

import time

import pytest

from tests.conftest import wait_for
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import consume_all, create_worker_topics, register, rows, running, settings_for
from worker import bootstrap
from worker.adapters.postgres.event_store import PostgresEventStore, make_pool
from worker.adapters.postgres.outbox import PostgresOutbox
from worker.application.bus import CommandBus
from worker.application.handlers import HandlerContext
from worker.application.unit_of_work import ClientBatch
from worker.domain import StatusRule
from worker.roles.runtime import IdleClock, Stopper

A, B = "001000000000001AAA", "001000000000002AAA"


def append(app: bootstrap.App, command: object) -> None:
    batch = app.new_batch()
    app.bus.handle(command, HandlerContext(batch, app.rule))  # type: ignore[arg-type]
    batch.commit()


def outbox_empty(dsn: str) -> bool:
    return rows(dsn, "SELECT count(*) FROM outbox") == [(0,)]


@pytest.mark.timeout(120)
def test_a_standby_relay_takes_over_when_the_leaders_database_connection_freezes(
    worker_env: dict[str, str], database_url: str
) -> None:
    host_port = database_url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    with TcpProxy(host, int(port)) as proxy:
        timeout = {"WORKER_POSTGRES__DEAD_PEER_TIMEOUT_S": "2"}
        direct = settings_for(worker_env, **timeout)
        proxied = settings_for(worker_env, WORKER_POSTGRES__URL=database_url.replace(
            host_port, f"127.0.0.1:{proxy.port}"), **timeout)
        create_worker_topics(direct)
        writer, leader_app, standby_app = (bootstrap.bootstrap(s) for s in (direct, proxied, direct))
        leader_stop, standby_stop = Stopper(), Stopper()
        try:
            append(writer, register(A))
            with running(bootstrap.relay(leader_app, leader_stop, IdleClock(None))) as leader:
                wait_for(lambda: outbox_empty(database_url), what="the first relay to lead and publish")
                proxy.freeze()
                append(writer, register(B))
                with running(bootstrap.relay(standby_app, standby_stop, IdleClock(None))) as standby:
                    wait_for(lambda: outbox_empty(database_url), timeout_s=30,
                             what="the standby to take the lock of the frozen relay and publish")
                    standby_stop.stop()
                leader_stop.stop()
                proxy.cut()  # the frozen relay's blocked query fails; it sees the stop and leaves
        finally:
            for app in (writer, leader_app, standby_app):
                app.close()
    assert leader["code"] == 0 and standby["code"] == 0
    published = consume_all(direct.kafka.bootstrap_servers, direct.kafka.events_topic)
    assert sorted(m.key().decode() for m in published) == [A, B]


@pytest.mark.timeout(60)
def test_the_leading_relay_wakes_when_an_ingest_transaction_commits(database_url: str) -> None:
    """NOTIFY in the batch's transaction: the leader's wait ends at the commit, not at its fallback timer."""
    outbox, pool = PostgresOutbox(database_url), make_pool(database_url, 2, 5.0)
    try:
        assert outbox.lead()
        assert not outbox.wait_for_rows(0.2)  # nothing committed: the timer ends the wait
        batch = ClientBatch(PostgresEventStore(pool), snapshot_interval=100, worker_version="test")
        CommandBus().handle(register(A), HandlerContext(batch, StatusRule()))
        batch.commit()
        started = time.monotonic()
        assert outbox.wait_for_rows(30.0)
        assert time.monotonic() - started < 5.0
        assert [r.stream_id for r in outbox.unpublished(10)] == [A]
    finally:
        outbox.close()
        pool.close()
