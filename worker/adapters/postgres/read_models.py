"""The client read models in PostgreSQL: bulk load/save for the projector, and the reads of the query side."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from worker.adapters.postgres.event_store import pooled
from worker.application.projection import SUMMARY_COLUMNS

_COLS = ", ".join(SUMMARY_COLUMNS)
_LOAD = f"SELECT {_COLS} FROM client_summary WHERE client_id = ANY(%s) FOR UPDATE"
_UPSERT = (
    f"INSERT INTO client_summary ({_COLS}, projected_at) VALUES ({', '.join(['%s'] * len(SUMMARY_COLUMNS))}, now())"
    " ON CONFLICT (client_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in SUMMARY_COLUMNS if c != "client_id")
    + ", projected_at = now() WHERE client_summary.version < EXCLUDED.version"
)
_HISTORY = (
    "INSERT INTO client_status_history (client_id, version, old_status, new_status, changed_at, event_id)"
    " VALUES (%(client_id)s, %(version)s, %(old_status)s, %(new_status)s, %(changed_at)s, %(event_id)s)"
    " ON CONFLICT (client_id, version) DO NOTHING"
)
READ_MODEL_TABLES = ("client_summary", "client_status_history")


class ReadModelSession:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def load(self, client_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        with self._conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_LOAD, (list(client_ids),)).fetchall()
        return {row["client_id"]: row for row in rows}

    def save(self, rows: Sequence[dict[str, Any]], history: Sequence[dict[str, Any]]) -> None:
        with self._conn.cursor() as cur:
            if rows:
                cur.executemany(_UPSERT, [_values(row) for row in rows])
            if history:
                cur.executemany(_HISTORY, list(history))


def _values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(Jsonb(row[c]) if c == "extra" else row[c] for c in SUMMARY_COLUMNS)


class PostgresReadModels:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _conn(self) -> Any:
        return pooled(self._pool)

    @contextmanager
    def session(self) -> Iterator[ReadModelSession]:
        """One transaction: rows loaded FOR UPDATE, then saved."""
        with self._conn() as conn, conn.transaction():
            yield ReadModelSession(conn)

    def truncate(self) -> None:
        with self._conn() as conn:
            conn.execute("TRUNCATE " + ", ".join(READ_MODEL_TABLES))

    def fetch(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows: list[dict[str, Any]] = cur.execute(sql, params).fetchall()
            return rows
