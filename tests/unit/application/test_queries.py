"""Query objects validate their parameters; the keyset cursor round-trips and pages stop at the end."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from worker.application.queries import (
    ClientNotFound,
    GetClient,
    ListClients,
    QueryBus,
    decode_cursor,
    encode_cursor,
)


class Rows:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = sorted(rows, key=lambda r: r["client_id"])

    def get_client(self, client_id: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["client_id"] == client_id), None)

    def list_clients(self, query: ListClients, after: tuple[Any, str] | None) -> list[dict[str, Any]]:
        rows = [r for r in self.rows if after is None or r["client_id"] > after[1]]
        return rows[: query.limit + 1]

    def status_history(self, client_id: str) -> list[dict[str, Any]]:
        return []

    def counts(self, include_deleted: bool) -> dict[str, int]:
        return {}


def test_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor("Acme", "001000000000001AAA")) == ("Acme", "001000000000001AAA")


def test_a_forged_cursor_is_refused_at_validation() -> None:
    with pytest.raises(pydantic.ValidationError):
        ListClients(cursor="not-a-cursor!")


def test_limit_is_bounded() -> None:
    with pytest.raises(pydantic.ValidationError):
        ListClients(limit=0)


def test_paging_walks_every_row_once_and_ends_without_cursor() -> None:
    ids = [f"001{n:015d}" for n in range(7)]
    bus = QueryBus(Rows([{"client_id": i} for i in ids]))
    seen, cursor = [], None
    while True:
        page = bus.ask(ListClients(limit=3, cursor=cursor))
        seen += [r["client_id"] for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids


def test_get_client_raises_not_found() -> None:
    with pytest.raises(ClientNotFound):
        QueryBus(Rows([])).ask(GetClient(client_id="001000000000001AAA"))
