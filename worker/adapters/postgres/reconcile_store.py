"""Reconciliation in PostgreSQL: the read model as the Reconciler reads it (`client_summary`), the record of each
run (what the metrics export after the CronJob's process is gone), and the requests for a reconcile (a retention
cliff asks for one from the last change it applied)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from worker.adapters.postgres.event_store import pooled
from worker.application.projection import SUMMARY_COLUMNS

_ROWS = f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM client_summary WHERE client_id = ANY(%s)"
_IDS = "SELECT client_id FROM client_summary WHERE client_id > %s ORDER BY client_id LIMIT %s"
_RECORD_RUN = """
INSERT INTO reconcile_runs (mode, since, started_at, compared, found, remaining, repaired, outcome, error)
VALUES (%(mode)s, %(since)s, %(started_at)s, %(compared)s, %(found)s, %(remaining)s, %(repaired)s, %(outcome)s,
        %(error)s)
RETURNING id
"""
_LAST_RUN = (
    "SELECT id, mode, since, started_at, finished_at, compared, found, remaining, repaired, outcome, error"
    " FROM reconcile_runs ORDER BY id DESC LIMIT 1"
)
_WATERMARK = "SELECT max(started_at) FROM reconcile_runs WHERE outcome IN ('converged', 'drift', 'reported')"
_REQUEST = "INSERT INTO reconcile_requests (since, reason) VALUES (%s, %s)"
_PENDING = (
    "SELECT count(*), min(since), bool_or(since IS NULL), min(requested_at), max(id)"
    " FROM reconcile_requests WHERE done_at IS NULL"
)
_PENDING_REASON = "SELECT reason FROM reconcile_requests WHERE done_at IS NULL ORDER BY id DESC LIMIT 1"
_DONE = "UPDATE reconcile_requests SET done_at = now(), done_by_run = %s WHERE done_at IS NULL AND id <= %s"
# The newest Salesforce commit applied from each of these partitions (a scan, but only on a retention cliff).
# Through the view: events store their metadata compact (migration 007).
_LAST_COMMIT = """
SELECT (metadata->>'source_partition')::int, max((metadata->>'commit_timestamp')::bigint)
FROM events_with_metadata
WHERE metadata->>'source_topic' = %s AND (metadata->>'source_partition')::int = ANY(%s)
GROUP BY 1
"""


@dataclass(frozen=True)
class PendingReconcile:
    """Requests not honoured yet: reconcile from ``since`` (``full``: one of them knows no start)."""

    count: int
    since: datetime | None
    full: bool
    requested_at: datetime | None
    last_id: int


class PostgresReadModelView:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def rows(self, client_ids: Collection[str]) -> dict[str, Mapping[str, Any]]:
        with pooled(self._pool) as conn, conn.cursor(row_factory=dict_row) as cur:
            return {row["client_id"]: row for row in cur.execute(_ROWS, (list(client_ids),)).fetchall()}

    def client_ids(self, after: str | None, limit: int) -> list[str]:
        with pooled(self._pool) as conn:
            return [r[0] for r in conn.execute(_IDS, (after or "", limit)).fetchall()]


class PostgresReconcileLedger:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def record_run(self, *, mode: str, since: datetime | None, started_at: datetime, compared: int,
                   found: Mapping[str, int], remaining: Mapping[str, int], repaired: int, outcome: str,
                   error: str | None = None) -> int:
        with pooled(self._pool) as conn:
            row = conn.execute(_RECORD_RUN, {
                "mode": mode, "since": since, "started_at": started_at, "compared": compared, "found": Jsonb(found),
                "remaining": Jsonb(remaining), "repaired": repaired, "outcome": outcome,
                "error": error[:2000] if error else None}).fetchone()
        return int(row[0]) if row else 0

    def last_run(self) -> dict[str, Any] | None:
        with pooled(self._pool) as conn, conn.cursor(row_factory=dict_row) as cur:
            row: dict[str, Any] | None = cur.execute(_LAST_RUN).fetchone()
        return row

    def watermark(self) -> datetime | None:
        """When the last reconcile that compared started: an incremental one reads from there."""
        with pooled(self._pool) as conn:
            row = conn.execute(_WATERMARK).fetchone()
        return row[0] if row else None

    def request(self, since: datetime | None, reason: str) -> None:
        with pooled(self._pool) as conn:
            conn.execute(_REQUEST, (since, reason))

    def pending(self) -> PendingReconcile | None:
        with pooled(self._pool) as conn:
            row = conn.execute(_PENDING).fetchone()
        if not row or not row[0]:
            return None
        return PendingReconcile(int(row[0]), row[1], bool(row[2]), row[3], int(row[4]))

    def pending_reason(self) -> str | None:
        with pooled(self._pool) as conn:
            row = conn.execute(_PENDING_REASON).fetchone()
        return str(row[0]) if row else None

    def honoured(self, run_id: int, up_to_request: int) -> None:
        with pooled(self._pool) as conn:
            conn.execute(_DONE, (run_id, up_to_request))

    def last_applied_commits(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        """Partition -> the newest Salesforce commit timestamp (ms) applied from it (absent: none applied)."""
        with pooled(self._pool) as conn:
            rows = conn.execute(_LAST_COMMIT, (topic, list(partitions))).fetchall()
        return {int(p): int(ts) for p, ts in rows if ts is not None}
