"""What a run ended with, and how two runs differ: the read models row by row, the events of every stream, the
unique dead letters, and the run's own end conditions (lag 0 on both groups, an empty outbox).

Left out of the comparison, because they differ by design: `client_summary.projected_at` (when the projector
wrote the row), `client_status_history.event_id` (a fresh UUID per decided event), the events' metadata (Kafka
coordinates, trace ids, the worker's clock) and where a dead letter sat (the runs partition differently): dead
letters are compared by a hash of the original key and value, with their stage and error class."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tests.chaos.pipeline import lag
from tests.harness import consume_all
from worker.adapters.kafka.dlq import H_CLASS, H_STAGE
from worker.config import KafkaSettings

_SUMMARY = "SELECT client_id, to_jsonb(s) - 'projected_at' FROM client_summary s"
_HISTORY = "SELECT client_id || '@' || version, to_jsonb(h) - 'event_id' FROM client_status_history h"
_STREAMS = (
    "SELECT stream_id, count(*), md5(string_agg(version || ' ' || event_type || ' ' || schema_version || ' '"
    " || payload::text, E'\\n' ORDER BY version)) FROM events GROUP BY stream_id"
)
_STREAM = "SELECT version, event_type, schema_version, payload FROM events WHERE stream_id = %s ORDER BY version"
SHOWN = 5  # differences printed per comparison


@dataclass
class Outcome:
    """One run's end state."""

    name: str
    dsn: str
    summary: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, tuple[int, str]] = field(default_factory=dict)
    dead_letters: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # by DLQ topic kind
    dead_letter_records: dict[str, int] = field(default_factory=dict)  # before de-duplication
    lag: dict[str, int] = field(default_factory=dict)
    outbox: int = -1

    @property
    def events(self) -> int:
        return sum(count for count, _ in self.streams.values())


def read_outcome(name: str, dsn: str, kafka: KafkaSettings) -> Outcome:
    out = Outcome(name, dsn)
    with psycopg.connect(dsn) as conn:
        out.summary = dict(conn.execute(_SUMMARY).fetchall())  # type: ignore[arg-type]
        out.history = dict(conn.execute(_HISTORY).fetchall())  # type: ignore[arg-type]
        out.streams = {row[0]: (row[1], row[2]) for row in conn.execute(_STREAMS)}
        out.outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]  # type: ignore[index]
    for group, topic in ((kafka.ingest_group, kafka.cdc_topic), (kafka.projector_group, kafka.events_topic)):
        out.lag[group] = lag(kafka.bootstrap_servers, group, topic)
    for kind, topic in (("ingest", kafka.cdc_topic), ("projector", kafka.events_topic)):
        out.dead_letters[kind], out.dead_letter_records[kind] = unique_dead_letters(
            kafka.bootstrap_servers, topic + kafka.dlq_suffix)
    return out


def unique_dead_letters(bootstrap: str, topic: str) -> tuple[dict[str, tuple[str, str]], int]:
    """sha256(key, value) -> (stage, error class), and how many records the topic holds: a record dead-lettered
    twice (redelivered after a kill) counts once."""
    found: dict[str, tuple[str, str]] = {}
    records = consume_all(bootstrap, topic, timeout_s=60)
    for message in records:
        digest = hashlib.sha256((message.key() or b"") + b"\0" + (message.value() or b"")).hexdigest()
        headers = {k: (v or b"").decode(errors="replace") for k, v in message.headers() or []}
        found[digest] = (headers.get(H_STAGE, "?"), headers.get(H_CLASS, "?"))
    return found, len(records)


@dataclass
class Verdict:
    lines: list[str] = field(default_factory=list)
    failures: int = 0

    def check(self, what: str, differences: list[str], total: int) -> None:
        if not differences:
            self.lines.append(f"  same    {what}: {total:,} compared")
            return
        self.failures += 1
        self.lines.append(f"  DIFFERS {what}: {len(differences):,} of {total:,} differ; the first:")
        self.lines.extend(f"          {line}" for line in differences[:SHOWN])

    def expect(self, what: str, ok: bool, detail: str) -> None:
        self.lines.append(f"  {'ok     ' if ok else 'FAILED '} {what}: {detail}")
        self.failures += 0 if ok else 1


def compare(ref: Outcome, run: Outcome) -> Verdict:
    verdict = Verdict()
    for outcome in (ref, run):
        verdict.expect(f"{outcome.name}: lag", all(v == 0 for v in outcome.lag.values()), _text(outcome.lag))
        verdict.expect(f"{outcome.name}: outbox", outcome.outbox == 0, f"{outcome.outbox} rows")
    verdict.check("client_summary rows", _mapping_diff(ref.summary, run.summary, ref.name, run.name),
                  len(ref.summary.keys() | run.summary.keys()))
    verdict.check("client_status_history rows", _mapping_diff(ref.history, run.history, ref.name, run.name),
                  len(ref.history.keys() | run.history.keys()))
    stream_diff = _mapping_diff(ref.streams, run.streams, ref.name, run.name, show=False)
    verdict.check(f"event streams ({ref.events:,} / {run.events:,} events)",
                  [_first_event_difference(ref, run, line) for line in stream_diff[:SHOWN]] + stream_diff[SHOWN:],
                  len(ref.streams.keys() | run.streams.keys()))
    for kind in ref.dead_letters:
        records = f"{ref.dead_letter_records[kind]:,} / {run.dead_letter_records[kind]:,} records"
        verdict.check(f"unique dead letters of {kind} ({records})",
                      _mapping_diff(ref.dead_letters[kind], run.dead_letters[kind], ref.name, run.name),
                      len(ref.dead_letters[kind].keys() | run.dead_letters[kind].keys()))
    return verdict


def _mapping_diff(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str, show: bool = True) -> list[str]:
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            out.append(f"{key}: only in {a_name}" + (f": {_text(a[key])}" if show else ""))
        elif key not in a:
            out.append(f"{key}: only in {b_name}" + (f": {_text(b[key])}" if show else ""))
        elif a[key] != b[key]:
            out.append(f"{key}: {_field_diff(a[key], b[key], a_name, b_name)}" if show else key)
    return out


def _field_diff(a: Any, b: Any, a_name: str, b_name: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        return "; ".join(f"{k}: {a_name}={_text(a.get(k))} {b_name}={_text(b.get(k))}" for k in keys)
    return f"{a_name}={_text(a)} {b_name}={_text(b)}"


def _first_event_difference(ref: Outcome, run: Outcome, line: str) -> str:
    stream = line.split(":", 1)[0]
    with psycopg.connect(ref.dsn) as a, psycopg.connect(run.dsn) as b:
        left, right = a.execute(_STREAM, (stream,)).fetchall(), b.execute(_STREAM, (stream,)).fetchall()
    for mine, theirs in zip(left, right, strict=False):
        if mine != theirs:
            return f"{stream} v{mine[0]}: {ref.name}={_text(mine[1:])} {run.name}={_text(theirs[1:])}"
    return f"{stream}: {ref.name} has {len(left)} events, {run.name} {len(right)} (the shorter is a prefix)"


def _text(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)[:400]
