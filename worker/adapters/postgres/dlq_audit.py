"""The audit trail of DLQ replays (`dlq_replays`): one row per dead letter per replay attempt."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True)
class ReplayRecord:
    operator: str
    note: str | None
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    target_topic: str | None
    target_partition: int | None
    original_offset: int | None
    error_class: str
    replay_count: int
    result: str
    detail: str | None = None


_INSERT = (
    "INSERT INTO dlq_replays (operator, note, dlq_topic, dlq_partition, dlq_offset, target_topic, target_partition,"
    " original_offset, error_class, replay_count, result, detail)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


class AuditTableMissing(LookupError):
    """The database has no `dlq_replays` table (not migrated)."""


class AuditTrail:
    """The audit rows of one DLQ topic, inside the transaction that holds the topic's replay lock."""

    def __init__(self, conn: psycopg.Connection[Any], dlq_topic: str) -> None:
        self._conn = conn
        self._topic = dlq_topic

    def already_published(self) -> set[str]:
        """`partition@offset` of the dead letters of the topic that a replay already published."""
        rows = self._conn.execute(
            "SELECT DISTINCT dlq_partition, dlq_offset FROM dlq_replays WHERE dlq_topic = %s"
            " AND result = 'published'", (self._topic,),
        ).fetchall()
        return {f"{p}@{o}" for p, o in rows}

    def record(self, entries: list[ReplayRecord]) -> None:
        if not entries:
            return
        with self._conn.cursor() as cur:
            cur.executemany(_INSERT, [
                (e.operator, e.note, e.dlq_topic, e.dlq_partition, e.dlq_offset, e.target_topic, e.target_partition,
                 e.original_offset, e.error_class, e.replay_count, e.result, e.detail)
                for e in entries
            ])


class ReplayAudit:
    def __init__(self, dsn: str, connect_timeout_s: float = 5.0) -> None:
        self._dsn = dsn
        self._timeout = max(1, int(connect_timeout_s))

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._dsn, connect_timeout=self._timeout)

    @contextmanager
    def locked(self, dlq_topic: str) -> Iterator[AuditTrail]:
        """ONE transaction holding the replay lock of ``dlq_topic``: what was published is read, the replay
        publishes, its outcomes are written, then the lock goes with the commit. A concurrent replay of the same
        topic waits at the lock and then reads what this one published, so one record is never published by
        both. (One lock per topic, not per record: a replay of thousands of records would exhaust the lock
        table.)"""
        with self._connect() as conn, conn.transaction():
            try:
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("dlq_replays " + dlq_topic,))
                conn.execute("SELECT 1 FROM dlq_replays LIMIT 0")
            except psycopg.errors.UndefinedTable:
                raise AuditTableMissing("the database has no replay audit table: run `worker migrate`") from None
            yield AuditTrail(conn, dlq_topic)

    def history(self, dlq_topic: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self._connect() as conn:
            cur = conn.execute(
                "SELECT replayed_at, operator, dlq_topic, dlq_partition || '@' || dlq_offset AS dlq, target_topic,"
                " target_partition, original_offset, error_class, replay_count, result, detail, note"
                " FROM dlq_replays WHERE %(t)s::text IS NULL OR dlq_topic = %(t)s ORDER BY id DESC LIMIT %(n)s",
                {"t": dlq_topic, "n": limit},
            )
            names = [c.name for c in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
