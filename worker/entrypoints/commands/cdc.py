"""`worker cdc parse` (what the worker makes of one message) and `worker cdc produce` (messages from files to
the input topic, in the format the file holds)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import (
    EXIT_ERROR,
    CliError,
    add_connection_options,
    print_json,
    print_table,
)

FORMAT_CHOICES = ("auto", "pubsub-avro", "confluent-avro", "pubsub-json", "cometd", "confluent-json")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("cdc", help="inspect and produce Salesforce CDC messages")
    sub = parser.add_subparsers(dest="cdc_command", required=True, metavar="ACTION")

    parse = sub.add_parser("parse", help="show what the worker makes of one CDC message")
    parse.add_argument("file", nargs="?", default="-", help="the message value; - for standard input")
    parse.add_argument("--format", choices=FORMAT_CHOICES, default="auto")
    parse.add_argument("--schema", help="writer schema (.avsc) for Avro or bitmap decoding")
    parse.add_argument("--schema-id", help="the schema id header of a Pub/Sub Avro message")
    parse.add_argument("--json", action="store_true")
    parse.set_defaults(func=_parse)

    produce = sub.add_parser("produce", help="publish CDC messages from files to the input topic")
    produce.add_argument("files", nargs="+", help=".json (one message), .jsonl (one per line), .avro (Pub/Sub)")
    produce.add_argument("--topic", help="default: WORKER_KAFKA__CDC_TOPIC")
    produce.add_argument("--format", choices=("auto", "json", "jsonl", "avro"), default="auto")
    add_connection_options(produce, database=False)
    produce.set_defaults(func=_produce)


def describe(event: Any) -> dict[str, Any]:
    """A change event as plain data: header, and each field set / nulled / diff / unchanged with its value."""
    return {
        "format": event.format,
        "entity": event.entity_name,
        "change_type": event.change_type.value,
        "record_ids": list(event.record_ids),
        "transaction_key": event.transaction_key,
        "sequence_number": event.sequence_number,
        "commit_timestamp": event.commit_timestamp_ms,
        "commit_number": event.commit_number,
        "change_origin": event.change_origin,
        "replay_id": event.replay_id,
        "schema_id": event.schema_id,
        "fields": {name: {"state": v.state.value, "value": v.value} for name, v in sorted(event.fields.items())},
    }


def _parse(args: argparse.Namespace, ops: Operations) -> int:
    data = sys.stdin.buffer.read() if args.file == "-" else _read(Path(args.file))
    resolver = ops.schema_resolver(configured=False)
    headers: dict[str, bytes] = {}
    if args.schema:
        schema_id = args.schema_id or Path(args.schema).stem
        resolver.add(schema_id, Path(args.schema).read_text(encoding="utf-8"))
        headers["schema_id"] = schema_id.encode()
    elif args.schema_id:
        headers["schema_id"] = args.schema_id.encode()
    try:
        event = ops.parse_cdc(data, headers, fmt=args.format, schemas=resolver)
    except ChangeEventParseError as exc:
        raise CliError(f"cannot parse: {type(exc).__name__}: {exc}", EXIT_ERROR) from None
    info = describe(event)
    if args.json:
        print_json(info)
        return 0
    for key in ("format", "entity", "change_type", "record_ids", "transaction_key", "commit_timestamp", "replay_id"):
        print(f"{key:<17} {info[key]}")
    print()
    rows = [{"field": name, "state": f["state"], "value": f["value"]} for name, f in info["fields"].items()]
    print_table([r for r in rows if r["state"] != "unchanged"] + [r for r in rows if r["state"] == "unchanged"])
    return 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def messages_of(path: Path, fmt: str, ops: Operations) -> Iterator[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """(key, value, headers) for each message in a file; the key is the first record id."""
    kind = fmt if fmt != "auto" else {".jsonl": "jsonl", ".avro": "avro"}.get(path.suffix, "json")
    data = _read(path)
    if kind == "avro":
        try:
            yield from ops.avro_file_messages(data)
        except ValueError as exc:
            raise CliError(f"{path}: {exc}") from None
        return
    lines = data.splitlines() if kind == "jsonl" else [data]
    for line in lines:
        if not line.strip():
            continue
        yield _key_of(line), line, []


def _key_of(value: bytes) -> bytes | None:
    try:
        doc = json.loads(value)
    except ValueError:
        return None  # still produced: the worker dead-letters what it cannot parse
    if not isinstance(doc, dict):
        return None
    data: dict[str, Any] = doc["data"] if isinstance(doc.get("data"), dict) else {}
    for holder in (doc, doc.get("payload"), data.get("payload")):
        if isinstance(holder, dict) and isinstance(holder.get("ChangeEventHeader"), dict):
            ids = holder["ChangeEventHeader"].get("recordIds") or []
            return str(ids[0]).encode() if ids else None
    return None


def _produce(args: argparse.Namespace, ops: Operations) -> int:
    topic = args.topic or ops.settings.kafka.cdc_topic
    producer = ops.producer()
    failures: list[str] = []
    count = 0
    for name in args.files:
        for key, value, headers in messages_of(Path(name), args.format, ops):
            producer.produce(topic, key=key, value=value, headers=headers,  # type: ignore[arg-type]
                             on_delivery=lambda err, _m: failures.append(str(err)) if err else None)
            producer.poll(0)
            count += 1
    remaining = producer.flush(60)
    if remaining or failures:
        raise CliError(f"{remaining + len(failures)} of {count} messages not acknowledged: {failures[:3]}")
    print(f"produced {count} message(s) to {topic}")
    return 0
