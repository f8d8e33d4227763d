"""The ResyncQueue port on PostgreSQL: requests claimed with FOR UPDATE SKIP LOCKED and a lease, so replicas of
the resync role never read the same client twice at once, and a worker that dies leaves its claims to expire."""

from __future__ import annotations

from collections.abc import Collection

from psycopg_pool import ConnectionPool

from worker.adapters.postgres.event_store import FULL_RESYNC_LOCK, REQUEST_FULL_RESYNC, pooled
from worker.application.ports import ClaimedResync, FailingResync, FullResync, ResyncStatus

_CLAIM = """
WITH due AS (
    SELECT client_id FROM resync_requests
    WHERE next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY attempts, requested_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE resync_requests r
SET claimed_by = %(worker)s, claimed_until = now() + make_interval(secs => %(lease)s)
FROM due WHERE r.client_id = due.client_id
RETURNING r.client_id, r.reason, r.generation, r.attempts
"""
_RELEASE = (
    "UPDATE resync_requests SET claimed_by = NULL, claimed_until = NULL,"
    " next_attempt_at = greatest(next_attempt_at, now() + make_interval(secs => %s))"
    " WHERE client_id = ANY(%s) AND claimed_by = %s"
)
_FAILED = """
UPDATE resync_requests SET
    attempts = attempts + 1,
    last_error = %(error)s,
    claimed_by = NULL, claimed_until = NULL,
    next_attempt_at = now() + make_interval(secs => CASE WHEN attempts + 1 >= %(cap)s
        THEN %(failing)s ELSE least(%(backoff)s * power(2, attempts), %(failing)s) END)
WHERE client_id = ANY(%(ids)s) AND claimed_by = %(worker)s
"""
_REQUEST = (
    "INSERT INTO resync_requests (client_id, reason) SELECT unnest(%s::text[]), %s"
    " ON CONFLICT (client_id) DO UPDATE SET reason = EXCLUDED.reason, requested_at = now(), attempts = 0,"
    " last_error = NULL, generation = nextval('resync_generation'), next_attempt_at = now()"
)
_CLAIM_FULL = """
WITH next AS (
    SELECT id FROM full_resync_requests
    WHERE completed_at IS NULL AND next_attempt_at <= now()
      AND (claimed_until IS NULL OR claimed_until < now() OR claimed_by = %(worker)s)
    ORDER BY id LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE full_resync_requests f
SET claimed_by = %(worker)s, claimed_until = now() + make_interval(secs => %(lease)s)
FROM next WHERE f.id = next.id
RETURNING f.id, f.reason, f.scan_id, f.cursor, f.phase, f.records
"""
_START_SCAN = (
    "UPDATE full_resync_requests SET scan_id = %s, cursor = NULL, phase = 'scanning',"
    " started_at = coalesce(started_at, now()), pages = 0, records = 0 WHERE id = %s"
)
_UNSEEN = """
SELECT e.stream_id FROM events e
WHERE e.version = 1
  AND NOT EXISTS (SELECT 1 FROM full_resync_seen s WHERE s.request_id = %(id)s AND s.client_id = e.stream_id)
  AND NOT EXISTS (SELECT 1 FROM resync_requests r WHERE r.client_id = e.stream_id)
ORDER BY e.stream_id LIMIT %(limit)s
"""
_COMPLETE_FULL = (
    "UPDATE full_resync_requests SET completed_at = now(), phase = 'done', claimed_by = NULL,"
    " claimed_until = NULL WHERE id = %s"
)
_FAIL_FULL = """
UPDATE full_resync_requests SET attempts = attempts + 1, last_error = %(error)s,
    claimed_by = NULL, claimed_until = NULL,
    next_attempt_at = now() + make_interval(secs => %(retry)s),
    scan_id = CASE WHEN %(restart)s THEN NULL ELSE scan_id END,
    cursor = CASE WHEN %(restart)s THEN NULL ELSE cursor END,
    phase = CASE WHEN %(restart)s AND phase = 'scanning' THEN 'pending' ELSE phase END
WHERE id = %(id)s
"""
_FORGET_SEEN = "DELETE FROM full_resync_seen WHERE request_id = %s"
_EXTRA_KEYS = """
SELECT DISTINCT k FROM (
    SELECT jsonb_object_keys(extra) AS k FROM client_summary WHERE extra <> '{}'::jsonb
) keys ORDER BY k
"""
_BACKLOG = """
SELECT count(*), count(*) FILTER (WHERE next_attempt_at <= now()),
       extract(epoch FROM now() - min(requested_at)),
       count(*) FILTER (WHERE attempts >= %s)
FROM resync_requests
"""
_FAILING = (
    "SELECT client_id, attempts, last_error, next_attempt_at FROM resync_requests WHERE attempts >= %s"
    " ORDER BY attempts DESC, client_id LIMIT %s"
)
_PENDING = "SELECT client_id FROM resync_requests WHERE client_id = ANY(%s)"
_FULL_PENDING = "SELECT count(*) FROM full_resync_requests WHERE completed_at IS NULL"
_FULL_PROGRESS = (
    "SELECT scan_id, phase, pages, records FROM full_resync_requests WHERE completed_at IS NULL ORDER BY id LIMIT 1"
)
_FULL_STATUS = (
    "SELECT id, reason, phase, requested_at, started_at, pages, records, attempts, last_error, claimed_by"
    " FROM full_resync_requests WHERE completed_at IS NULL ORDER BY id"
)


class PostgresResyncQueue:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def claim_resyncs(self, worker: str, limit: int, lease_s: float) -> list[ClaimedResync]:
        with pooled(self._pool) as conn:
            rows = conn.execute(_CLAIM, {"worker": worker, "limit": limit, "lease": lease_s}).fetchall()
        return [ClaimedResync(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    def release(self, client_ids: Collection[str], worker: str, retry_in_s: float = 0.0) -> None:
        if client_ids:
            with pooled(self._pool) as conn:
                conn.execute(_RELEASE, (retry_in_s, list(client_ids), worker))

    def record_failure(self, client_ids: Collection[str], worker: str, error: str, max_attempts: int,
                       backoff_s: float, failing_retry_s: float) -> None:
        with pooled(self._pool) as conn:
            conn.execute(_FAILED, {"error": error[:2000], "cap": max_attempts, "failing": failing_retry_s,
                                   "backoff": backoff_s, "ids": list(client_ids), "worker": worker})

    def request(self, client_ids: Collection[str], reason: str) -> int:
        with pooled(self._pool) as conn:
            return int(conn.execute(_REQUEST, (list(client_ids), reason)).rowcount)

    def request_full(self, reason: str, source_key: str | None) -> bool:
        with pooled(self._pool) as conn, conn.transaction():
            conn.execute(FULL_RESYNC_LOCK)
            return bool(conn.execute(REQUEST_FULL_RESYNC, (reason, source_key)).rowcount)

    def pending(self, client_ids: Collection[str]) -> set[str]:
        """Those of ``client_ids`` still waiting for a read (reconcile waits for its repairs)."""
        with pooled(self._pool) as conn:
            return {r[0] for r in conn.execute(_PENDING, (list(client_ids),)).fetchall()}

    def full_resyncs_pending(self) -> int:
        """Full resyncs not completed yet (backfill waits for them)."""
        with pooled(self._pool) as conn:
            row = conn.execute(_FULL_PENDING).fetchone()
        return int(row[0]) if row else 0

    def full_scan_progress(self) -> tuple[str | None, str, int, int] | None:
        """(scan id, phase, pages, records) of the oldest full resync not completed; None when there is none."""
        with pooled(self._pool) as conn:
            row = conn.execute(_FULL_PROGRESS).fetchone()
        return (row[0], row[1], int(row[2]), int(row[3])) if row else None

    def claim_full_resync(self, worker: str, lease_s: float) -> FullResync | None:
        with pooled(self._pool) as conn:
            row = conn.execute(_CLAIM_FULL, {"worker": worker, "lease": lease_s}).fetchone()
        return FullResync(row[0], row[1], row[2], row[3], row[4], int(row[5])) if row else None

    def start_scan(self, request_id: int, scan_id: str) -> None:
        with pooled(self._pool) as conn, conn.transaction():
            conn.execute(_FORGET_SEEN, (request_id,))
            conn.execute(_START_SCAN, (scan_id, request_id))

    def unseen_clients(self, request_id: int, limit: int) -> list[str]:
        with pooled(self._pool) as conn:
            return [r[0] for r in conn.execute(_UNSEEN, {"id": request_id, "limit": limit}).fetchall()]

    def complete_full_resync(self, request_id: int) -> None:
        with pooled(self._pool) as conn, conn.transaction():
            conn.execute(_COMPLETE_FULL, (request_id,))
            conn.execute(_FORGET_SEEN, (request_id,))

    def fail_full_resync(self, request_id: int, worker: str, error: str, retry_in_s: float,
                         restart: bool) -> None:
        with pooled(self._pool) as conn:
            conn.execute(_FAIL_FULL, {"error": error[:2000], "retry": retry_in_s, "restart": restart,
                                      "id": request_id})

    def seen_extra_fields(self) -> list[str]:
        with pooled(self._pool) as conn:
            return [r[0] for r in conn.execute(_EXTRA_KEYS).fetchall()]

    def status(self, max_attempts: int, failing_limit: int) -> ResyncStatus:
        with pooled(self._pool) as conn:
            backlog, due, oldest, failing = conn.execute(_BACKLOG, (max_attempts,)).fetchone() or (0, 0, None, 0)
            rows = conn.execute(_FAILING, (max_attempts, failing_limit)).fetchall()
            full = conn.execute(_FULL_STATUS).fetchall()
        columns = ("id", "reason", "phase", "requested_at", "started_at", "pages", "records", "attempts",
                   "last_error", "claimed_by")
        return ResyncStatus(
            backlog=int(backlog), due=int(due), oldest_age_s=float(oldest) if oldest is not None else None,
            failing_count=int(failing),
            failing=[FailingResync(r[0], int(r[1]), r[2], r[3]) for r in rows],
            full=[dict(zip(columns, r, strict=True)) for r in full],
        )
