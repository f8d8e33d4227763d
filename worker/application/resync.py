"""Resynchronizer: fetches dirty clients (gaps, unknown clients, dead letters) from Salesforce and applies the
full records; runs full resyncs (overflow, wildcard ids), deletions included. Salesforce being down only makes
this work wait: ingest goes on, and changes for dirty clients are held back by the aggregate meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from worker.application.handlers import to_details
from worker.application.ports import ClientSource, FetchedClient, ResyncQueue
from worker.application.unit_of_work import ClientBatch
from worker.domain import StatusRule


class Resynchronizer:
    def __init__(
        self,
        queue: ResyncQueue,
        source: ClientSource,
        new_batch: Callable[[], ClientBatch],
        rule: StatusRule,
        batch_size: int = 200,
    ) -> None:
        self._queue = queue
        self._source = source
        self._new_batch = new_batch
        self._rule = rule
        self._batch_size = batch_size

    def run_once(self) -> int:
        """One step of pending work; returns how many clients were resynchronized (0 = nothing to do).
        Transient errors of the source or the store propagate: the caller backs off and calls again."""
        full = self._queue.pending_full_resync()
        if full is not None:
            return self._full_resync(*full)
        pending = self._queue.pending_resyncs(self._batch_size)
        if not pending:
            return 0
        ids = [client_id for client_id, _, _ in pending]
        try:
            fetched = self._source.fetch_clients(ids)
        except Exception as exc:
            self._queue.record_resync_failure(ids, f"{type(exc).__name__}: {exc}")
            raise
        batch = self._new_batch()
        batch.preload(ids)
        for client_id, reason, requested_at in pending:
            record = fetched.get(client_id) or FetchedClient(client_id, None, True, None)
            self._apply(batch, record, reason)
            batch.resync_completed(client_id, requested_at)
        batch.commit()
        return len(ids)

    def _full_resync(self, request_id: int, reason: str) -> int:
        known = set(self._queue.known_client_ids())
        seen: set[str] = set()
        count = 0
        for chunk in _chunks(self._source.iter_all_clients(), self._batch_size):
            count += self._apply_chunk(chunk, reason)
            seen.update(record.client_id for record in chunk)
        gone = [FetchedClient(cid, None, True, None) for cid in sorted(known - seen)]
        for chunk in _chunks(iter(gone), self._batch_size):
            count += self._apply_chunk(chunk, reason + " (not in Salesforce any more)")
        self._queue.complete_full_resync(request_id)
        return max(count, 1)

    def _apply_chunk(self, chunk: list[FetchedClient], reason: str) -> int:
        batch = self._new_batch()
        batch.preload(record.client_id for record in chunk)
        for record in chunk:
            self._apply(batch, record, reason)
            batch.resync_completed(record.client_id, None)
        batch.commit()
        return len(chunk)

    def _apply(self, batch: ClientBatch, record: FetchedClient, reason: str) -> None:
        client = batch.get(record.client_id)
        details = to_details(record.data) if record.data is not None else None
        events = client.resynchronize(details, record.last_modified_ms, record.deleted, self._rule)
        metadata: dict[str, Any] = {
            "command": "ResyncClients",
            "correlation_id": f"resync:{record.client_id}",
            "causation_id": reason,
            "resync_reason": reason,
        }
        batch.record(client, events, metadata)


def _chunks(items: Iterable[FetchedClient], size: int) -> Iterable[list[FetchedClient]]:
    chunk: list[FetchedClient] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
