"""Queries: validated parameter objects, one handler each, behind a query bus. Handlers read read models only."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

SortKey = Literal["client_id", "name", "changed"]


class Query(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GetClient(Query):
    client_id: str = Field(min_length=15, max_length=18)


class ListClients(Query):
    status: str | None = None
    type: str | None = None
    industry: str | None = None
    billing_country: str | None = None
    name_prefix: str | None = None
    changed_since: datetime | None = None
    include_deleted: bool = False
    sort: SortKey = "client_id"
    limit: int = Field(default=50, ge=1, le=1000)
    cursor: str | None = None

    @field_validator("cursor")
    @classmethod
    def _decodable(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value


class ClientStatusHistory(Query):
    client_id: str = Field(min_length=15, max_length=18)


class CountClientsByStatus(Query):
    include_deleted: bool = False


class ClientPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


class ClientNotFound(LookupError):
    """No read-model row for this client id."""


class ClientReadModel(Protocol):
    def get_client(self, client_id: str) -> dict[str, Any] | None: ...

    def list_clients(self, query: ListClients, after: tuple[Any, str] | None) -> list[dict[str, Any]]: ...

    def status_history(self, client_id: str) -> list[dict[str, Any]]: ...

    def counts(self, include_deleted: bool) -> dict[str, int]: ...


def encode_cursor(sort_value: Any, client_id: str) -> str:
    raw = json.dumps([sort_value.isoformat() if isinstance(sort_value, datetime) else sort_value, client_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        value, client_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError) as exc:
        raise ValueError("cursor is not one this command returned") from exc
    return value, str(client_id)


def get_client(query: GetClient, reads: ClientReadModel) -> dict[str, Any]:
    row = reads.get_client(query.client_id)
    if row is None:
        raise ClientNotFound(f"no client {query.client_id}")
    return row


_SORT_FIELD = {"client_id": "client_id", "name": "name", "changed": "last_change_at"}


def list_clients(query: ListClients, reads: ClientReadModel) -> ClientPage:
    after = decode_cursor(query.cursor) if query.cursor else None
    rows = reads.list_clients(query, after)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = None
    if more and rows:
        last = rows[-1]
        cursor = encode_cursor(last.get(_SORT_FIELD[query.sort]), last["client_id"])
    return ClientPage(items=rows, next_cursor=cursor)


def client_status_history(query: ClientStatusHistory, reads: ClientReadModel) -> list[dict[str, Any]]:
    return reads.status_history(query.client_id)


def count_clients_by_status(query: CountClientsByStatus, reads: ClientReadModel) -> dict[str, int]:
    return reads.counts(query.include_deleted)


QUERY_HANDLERS: Mapping[type[Query], Callable[[Any, ClientReadModel], Any]] = {
    GetClient: get_client,
    ListClients: list_clients,
    ClientStatusHistory: client_status_history,
    CountClientsByStatus: count_clients_by_status,
}


class QueryBus:
    def __init__(
        self,
        reads: ClientReadModel,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self._reads = reads
        self._observe = observe

    def ask(self, query: Query) -> Any:
        import time

        started = time.perf_counter()
        try:
            return QUERY_HANDLERS[type(query)](query, self._reads)
        finally:
            if self._observe:
                self._observe(type(query).__name__, time.perf_counter() - started)
