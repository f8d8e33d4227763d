"""The retention cliff: input that expired before ingest read it is gone from Kafka, and only Salesforce still
knows what it said. At assignment the consumer reports such partitions; this logs ONE error naming them and the
offsets lost, counts them, and asks for an incremental reconcile from the newest change applied from them (a full
one when nothing was ever applied from one of them). `worker reconcile` without flags honours the request."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("worker.retention")


class RetentionCliff:
    def __init__(self, request_reconcile: Callable[[datetime | None, str], None],
                 last_commits: Callable[[str, Sequence[int]], dict[int, int]],
                 count: Callable[[str, int, int], None]) -> None:
        self._request = request_reconcile
        self._last_commits = last_commits
        self._count = count

    def __call__(self, expired: Sequence[Any]) -> None:
        """``expired``: the consumer's ExpiredInput records (topic, partition, committed, log_start, lost)."""
        names = ", ".join(
            f"{e.topic}[{e.partition}] {e.lost} offset(s) "
            + (f"(committed {e.committed} < log start {e.log_start})" if e.committed is not None
               else f"(no committed offset, starting at the end past {e.log_start})")
            for e in expired)
        for e in expired:
            self._count(e.topic, e.partition, e.lost)
        try:
            since = self._since(expired)
            self._request(since, f"retention cliff: {names}")
        except Exception as exc:  # the error line below still tells the operator what to run
            log.error("input expired before it was read: %s; the reconcile request was NOT stored (%s): run "
                      "`worker reconcile --full`", names, exc)
            return
        log.error("input expired before it was read: %s; those changes are lost from Kafka: a reconcile since %s "
                  "is requested (`worker reconcile` runs it)", names,
                  since.isoformat() if since else "the start (full)",
                  extra={"lost_offsets": sum(e.lost for e in expired)})

    def _since(self, expired: Sequence[Any]) -> datetime | None:
        since: int | None = None
        for topic in {e.topic for e in expired}:
            partitions = [e.partition for e in expired if e.topic == topic]
            last = self._last_commits(topic, partitions)
            if any(p not in last for p in partitions):
                return None  # nothing applied from one of them: every Account may be behind
            oldest = min(last[p] for p in partitions)
            since = oldest if since is None else min(since, oldest)
        return datetime.fromtimestamp(since / 1000, UTC) if since is not None else None
