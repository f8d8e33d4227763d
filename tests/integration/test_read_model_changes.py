"""The read model's day of last change (migration 009): the projector's updates of a row are HOT while no indexed
value changes, and `--changed-since` and the freshness query answer as they did with last_change_at indexed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from worker.adapters.postgres.client_queries import PostgresClientQueries
from worker.adapters.postgres.read_models import PostgresReadModels, ReadModelSession
from worker.application.projection import ProjectedEvent, project
from worker.application.queries import ListClients

MIDNIGHT = datetime(2026, 3, 1, tzinfo=UTC)


def _event(client_id: str, version: int, at: datetime) -> ProjectedEvent:
    stamp = int(at.timestamp() * 1000)
    if version == 1:
        return ProjectedEvent(f"e-{client_id}-1", "ClientRegistered", client_id, 1, {
            "details": {"name": client_id, "billing_address": {}, "extra": {}}, "status": "active",
            "change": {"commit_timestamp_ms": stamp}})
    return ProjectedEvent(f"e-{client_id}-{version}", "ClientDetailsChanged", client_id, version, {
        "changes": {"phone": [None, str(version)]}, "change": {"commit_timestamp_ms": stamp}})


def _apply(conn: psycopg.Connection[Any], events: list[ProjectedEvent]) -> None:
    with conn.transaction():
        session = ReadModelSession(conn)
        rows = session.load({e.client_id for e in events})
        for event in events:
            rows[event.client_id] = project(rows.get(event.client_id), event).row  # type: ignore[assignment]
        session.save(list(rows.values()), [])


@pytest.fixture
def queries(database_url: str) -> Any:
    pool = ConnectionPool(database_url, min_size=1, max_size=2, open=True)
    yield PostgresClientQueries(PostgresReadModels(pool))
    pool.close()


def test_updates_within_a_day_are_hot_and_the_day_moves_with_the_change(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        _apply(conn, [_event("001000000000001AAA", 1, MIDNIGHT - timedelta(minutes=1))])
        _apply(conn, [_event("001000000000001AAA", v, MIDNIGHT + timedelta(seconds=v)) for v in range(2, 22)])
        for v in range(22, 42):  # one transaction each, as the projector's batches
            _apply(conn, [_event("001000000000001AAA", v, MIDNIGHT + timedelta(seconds=v))])
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        updated, hot = conn.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                                    " WHERE relname = 'client_summary'").fetchone()  # type: ignore[misc]
        day = conn.execute("SELECT last_change_day FROM client_summary").fetchone()
    assert updated == 21 and hot == 20  # the first update moved the day (an indexed value): not HOT
    assert day == (MIDNIGHT.date(),)


def test_changed_since_and_the_newest_change_across_a_day_boundary_and_time_zones(
    database_url: str, queries: PostgresClientQueries
) -> None:
    at = {"001000000000001AAA": MIDNIGHT - timedelta(hours=2), "001000000000002AAA": MIDNIGHT - timedelta(seconds=1),
          "001000000000003AAA": MIDNIGHT + timedelta(seconds=1), "001000000000004AAA": MIDNIGHT + timedelta(hours=5)}
    with psycopg.connect(database_url) as conn:
        _apply(conn, [_event(cid, 1, when) for cid, when in at.items()])

    def since(moment: datetime) -> list[str]:
        return [r["client_id"] for r in queries.list_clients(ListClients(changed_since=moment), None)]

    assert since(MIDNIGHT - timedelta(seconds=1)) == ["001000000000002AAA", "001000000000003AAA",
                                                      "001000000000004AAA"]
    assert since(MIDNIGHT + timedelta(seconds=2)) == ["001000000000004AAA"]
    # the same instant written in another zone (its local date is the day before): the same answer
    new_york_evening = (MIDNIGHT - timedelta(hours=3)).astimezone(timezone(timedelta(hours=-5)))
    assert since(new_york_evening) == ["001000000000001AAA", "001000000000002AAA", "001000000000003AAA",
                                    "001000000000004AAA"]
    assert since(MIDNIGHT + timedelta(days=1)) == []
    assert queries.newest_change_at() == MIDNIGHT + timedelta(hours=5)
