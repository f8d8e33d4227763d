"""Dead letters through the real CLI: poison in -> list/show/stats/export explain it -> the cause is fixed (the
writer schema becomes available from Salesforce) -> replay gets it processed; replaying again appends nothing,
and a record replayed as often as the limit allows is refused."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.cdc_factory import CdcFactory
from tests.e2e.conftest import WORKER, Cli
from tests.fakes.salesforce_server import FakeSalesforce
from tests.harness import event_count, produce, rows
from worker.adapters.salesforce.encode import encode_record
from worker.adapters.salesforce.schemas import SCHEMAS_DIR

ACCOUNT = json.loads((SCHEMAS_DIR / "AccountChangeEvent.avsc").read_text())
NEW_SCHEMA = "8dX9g2Zt-new-schema"  # a schema id the worker has never seen (as after a field was added)
AVRO_ID, JSON_ID, GARBAGE_KEY = "001000000000002AAA", "001000000000001AAA", "001000000000003AAA"
GARBAGE = b"this is not a change event {"


def avro_create(record_id: str) -> bytes:
    record: dict[str, Any] = {f["name"]: None for f in ACCOUNT["fields"]}
    record["ChangeEventHeader"] = {
        "entityName": "Account", "recordIds": [record_id], "changeType": "CREATE", "changeOrigin": "",
        "transactionKey": "tx-avro-1", "sequenceNumber": 1, "commitTimestamp": 1_700_000_500_000,
        "commitNumber": 1, "commitUser": "005xx000001X8UzAAK", "nulledFields": [], "diffFields": [],
        "changedFields": [],
    }
    record.update(Name="Avro Corp", Type="Customer - Direct", Active__c="Yes")
    return encode_record(ACCOUNT, record)


def as_json(cli: Cli, *args: str, **env: str) -> Any:
    return json.loads(cli(*args, "--json", **env).stdout)


def test_poison_is_explained_then_replayed_once_fixed_and_replaying_again_appends_nothing(
    cli: Cli, worker_env: dict[str, str], tmp_path: Path
) -> None:
    bootstrap, topic = worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"]
    dsn = worker_env["WORKER_POSTGRES__URL"]
    avro_value = avro_create(AVRO_ID)
    produce(bootstrap, topic, [CdcFactory().create(JSON_ID)])
    produce(bootstrap, topic, [(AVRO_ID.encode(), avro_value)], headers=[("schema_id", NEW_SCHEMA.encode())])
    produce(bootstrap, topic, [(GARBAGE_KEY.encode(), GARBAGE)])
    cli("run", "ingest", "--exit-when-idle", "3")
    assert event_count(dsn) == 1

    # list / filters / stats explain both dead letters
    listed = as_json(cli, "dlq", "list")
    assert len(listed) == 2 and "UnknownSchema" in {r["error"] for r in listed}
    assert {r["stage"] for r in listed} == {"parse"}
    unknown = as_json(cli, "dlq", "list", "--error-class", "UnknownSchema")
    assert [r["key"] for r in unknown] == [AVRO_ID] and NEW_SCHEMA in unknown[0]["message"]
    assert unknown[0]["original"].startswith(f"{topic}[")
    garbage = as_json(cli, "dlq", "list", "--key", GARBAGE_KEY)
    assert len(garbage) == 1 and garbage[0]["error"] != "UnknownSchema"
    assert as_json(cli, "dlq", "list", "--since", "2000-01-01T00:00:00Z", "--until", "2000-01-02T00:00:00Z") == []
    stats = as_json(cli, "dlq", "stats")
    assert sorted(s["count"] for s in stats) == [1, 1] and all(s["first_seen"] <= s["last_seen"] for s in stats)

    # show: headers, stack trace, why it cannot be decoded; --raw gives the exact bytes
    avro_dlq = unknown[0]["dlq"]
    shown = cli("dlq", "show", avro_dlq).stdout
    assert "UnknownSchema" in shown and "stack trace:" in shown and "Traceback" in shown
    assert "schema_id = " + NEW_SCHEMA in shown and "cannot decode" in shown
    raw = subprocess.run([*WORKER, "dlq", "show", avro_dlq, "--raw"], env=cli.env | worker_env, capture_output=True,
                         check=True, cwd=cli.env["PYTHONPATH"]).stdout
    assert raw == avro_value
    missing = cli("dlq", "show", "0@999999", check=False)
    assert missing.returncode == 1 and "no dead letter 0@999999" in missing.stderr

    # export: one JSON line per dead letter, the value intact
    out = tmp_path / "dlq.jsonl"
    cli("dlq", "export", "--error-class", "UnknownSchema", "--output", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 1 and base64.b64decode(lines[0]["value_base64"]) == avro_value
    assert lines[0]["headers"]["schema_id"] == NEW_SCHEMA and lines[0]["original_topic"] == topic

    with FakeSalesforce() as salesforce:
        salesforce.schemas[NEW_SCHEMA] = ACCOUNT  # the cause is fixed: Salesforce now serves the writer schema
        fixed = {"WORKER_SALESFORCE__AUTH": "session", "WORKER_SALESFORCE__SESSION_ID": "token",
                 "WORKER_SALESFORCE__INSTANCE_URL": salesforce.url}
        decoded = as_json(cli, "dlq", "show", avro_dlq, **fixed)
        assert decoded["decoded"]["record_ids"] == [AVRO_ID] and decoded["decode_error"] is None

        dry = as_json(cli, "dlq", "replay", "--error-class", "UnknownSchema", "--dry-run")
        assert dry["counts"] == {"would-publish": 1}
        assert rows(dsn, "SELECT count(*) FROM dlq_replays") == [(0,)]

        first = as_json(cli, "dlq", "replay", "--error-class", "UnknownSchema", "--operator", "ops-1",
                        "--note", "schema published")
        assert first["counts"] == {"published": 1}
        # a replayed change may be older than its client's last change: the client is read from Salesforce too
        assert first["resync_queued"] == [AVRO_ID]
        assert (AVRO_ID,) in rows(dsn, "SELECT client_id FROM resync_requests")
        cli("run", "ingest", "--exit-when-idle", "3", **fixed)
        assert event_count(dsn) == 2
        assert rows(dsn, "SELECT stream_id FROM events ORDER BY global_position") == [(JSON_ID,), (AVRO_ID,)]

        again = as_json(cli, "dlq", "replay", "--error-class", "UnknownSchema")
        assert again["counts"] == {"skipped": 1}
        forced = as_json(cli, "dlq", "replay", "--error-class", "UnknownSchema", "--force")
        assert forced["counts"] == {"published": 1}
        cli("run", "ingest", "--exit-when-idle", "3", **fixed)
        assert event_count(dsn) == 2  # the second replay appended nothing

    # the garbage cannot be fixed: replayed once it comes back with its replay count, then the limit refuses it
    garbage_replay = as_json(cli, "dlq", "replay", "--all", "--key", GARBAGE_KEY)
    assert garbage_replay["counts"] == {"published": 1} and garbage_replay["resync_queued"] == [GARBAGE_KEY]
    cli("run", "ingest", "--exit-when-idle", "3")
    back = as_json(cli, "dlq", "list", "--key", GARBAGE_KEY)
    assert [r["replays"] for r in back] == [0, 1]
    limited = as_json(cli, "dlq", "replay", "--all", "--key", GARBAGE_KEY, WORKER_DLQ_MAX_REPLAYS="1")
    assert limited["counts"] == {"skipped": 1, "refused": 1}
    refused = next(r for r in limited["replays"] if r["result"] == "refused")
    assert refused["dlq"] == back[1]["dlq"] and "WORKER_DLQ_MAX_REPLAYS" in refused["detail"]

    audit = as_json(cli, "dlq", "audit")
    assert [a["result"] for a in audit] == ["refused", "published", "published", "published"]
    assert audit[-1]["note"] == "schema published" and audit[-1]["dlq"] == avro_dlq
