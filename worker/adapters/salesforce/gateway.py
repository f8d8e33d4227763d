"""The ClientSource port on Salesforce's REST API: raw Account records mapped to client data by the ACL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from worker.adapters.salesforce.api import SalesforceApi
from worker.adapters.salesforce.mapping import FieldMapping
from worker.application.ports import FetchedClient


class SalesforceClientSource:
    def __init__(self, api: SalesforceApi, mapping: FieldMapping) -> None:
        self._api = api
        self._mapping = mapping

    def fetch_clients(self, client_ids: Sequence[str]) -> dict[str, FetchedClient]:
        records = self._api.fetch_accounts(client_ids)
        found = {cid: self._to_client(records[cid]) for cid in client_ids if cid in records}
        # Not returned by SOQL: hard-deleted or never existed. Either way, gone.
        return {cid: found.get(cid) or FetchedClient(cid, None, True, None) for cid in client_ids}

    def iter_all_clients(self) -> Iterator[FetchedClient]:
        for record in self._api.iter_all_accounts():
            yield self._to_client(record)

    def _to_client(self, record: Mapping[str, Any]) -> FetchedClient:
        deleted = bool(record.get("IsDeleted"))
        data = None if deleted else self._mapping.record_to_client_data(record)
        return FetchedClient(str(record["Id"]), data, deleted, _epoch_ms(record.get("LastModifiedDate")))


def _epoch_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":  # Salesforce's +0000
        text = text[:-2] + ":" + text[-2:]
    return int(datetime.fromisoformat(text).timestamp() * 1000)
