"""SQL of the query side (implements application.queries.ClientReadModel); statements built once."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from worker.adapters.postgres.read_models import PostgresReadModels
from worker.application.queries import ListClients

_GET = "SELECT * FROM client_summary WHERE client_id = %s"
_HISTORY = (
    "SELECT version, old_status, new_status, changed_at, event_id FROM client_status_history"
    " WHERE client_id = %s ORDER BY version"
)
# Both through the index on the day of the last change (migration 009): its newest day, then that day's rows.
_NEWEST = ("SELECT max(last_change_at) AS newest FROM client_summary"
           " WHERE last_change_day = (SELECT max(last_change_day) FROM client_summary)")
_COUNTS = "SELECT status, count(*) AS clients FROM client_summary WHERE registered {} GROUP BY status ORDER BY 1"
# Sort key -> (expression, direction). NULLs sort as '' / epoch so keyset comparisons stay total.
_SORTS = {
    "client_id": (sql.SQL("client_id"), "ASC"),
    "name": (sql.SQL("COALESCE(lower(name), '')"), "ASC"),
    "changed": (sql.SQL("COALESCE(last_change_at, 'epoch'::timestamptz)"), "DESC"),
}
_FILTERS = {
    "status": "status = %s",
    "type": "type = %s",
    "industry": "industry = %s",
    "billing_country": "billing_country = %s",
}


class PostgresClientQueries:
    def __init__(self, models: PostgresReadModels) -> None:
        self._models = models

    def get_client(self, client_id: str) -> dict[str, Any] | None:
        rows = self._models.fetch(_GET, (client_id,))
        return rows[0] if rows else None

    def newest_change_at(self) -> Any:
        """Commit time of the newest Salesforce change reflected in the read model (freshness)."""
        return self._models.fetch(_NEWEST)[0]["newest"]

    def status_history(self, client_id: str) -> list[dict[str, Any]]:
        return self._models.fetch(_HISTORY, (client_id,))

    def counts(self, include_deleted: bool) -> dict[str, int]:
        statement = _COUNTS.format("" if include_deleted else "AND NOT deleted")
        return {row["status"]: row["clients"] for row in self._models.fetch(statement)}

    def list_clients(self, query: ListClients, after: tuple[Any, str] | None) -> list[dict[str, Any]]:
        where: list[sql.Composable] = [sql.SQL("registered")]
        params: list[Any] = []
        for field, clause in _FILTERS.items():
            value = getattr(query, field)
            if value is not None:
                where.append(sql.SQL(clause))
                params.append(value)
        if query.name_prefix:
            where.append(sql.SQL("lower(name) LIKE %s"))
            params.append(query.name_prefix.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%")
        if query.changed_since:
            where.append(sql.SQL("last_change_day >= (%s::timestamptz AT TIME ZONE 'UTC')::date"
                                 " AND last_change_at >= %s"))
            params += [query.changed_since, query.changed_since]
        if not query.include_deleted:
            where.append(sql.SQL("NOT deleted"))
        expr, direction = _SORTS[query.sort]
        if after is not None:
            op = sql.SQL(">" if direction == "ASC" else "<")
            where.append(sql.SQL("({}, client_id) {} (%s, %s)").format(expr, op))
            value = after[0]
            if query.sort == "name":
                value = (value or "").lower()
            elif query.sort == "changed" and value is None:
                value = "epoch"
            params += [value, after[1]]
        statement = sql.SQL("SELECT * FROM client_summary WHERE {} ORDER BY {} {}, client_id {} LIMIT %s").format(
            sql.SQL(" AND ").join(where), expr, sql.SQL(direction), sql.SQL(direction)
        )
        params.append(query.limit + 1)
        return self._models.fetch(statement.as_string(None), params)
