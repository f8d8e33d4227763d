"""The read side through the real CLI: CDC in, `worker query` shows each client as Salesforce last saw it, and
both rebuilds give back the live read model, row by row."""

from __future__ import annotations

import json

from tests.cdc_factory import CdcFactory
from tests.e2e.conftest import Cli
from tests.harness import produce, rows

A, B, C, D = (f"00100000000000{n}AAA" for n in range(1, 5))
COMPARED = "SELECT * FROM client_summary ORDER BY client_id"


def test_queries_show_each_client_as_salesforce_last_saw_it_and_rebuilds_match(
    cli: Cli, worker_env: dict[str, str]
) -> None:
    f = CdcFactory()
    changes = [
        f.create(A, Industry="Energy", Phone="+1"), f.update(A, nulled=("Phone",), Website="https://a.example"),
        f.create(B), f.delete(B),
        f.create(C, Active__c="No"), f.delete(C), f.undelete(C, Name="Client C again", Active__c="Yes"),
        f.create(D), f.update(D, Rating="Hot"),
    ]
    produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"], changes)
    cli("run", "all", "--exit-when-idle", "3", timeout=240)

    def client(cid: str) -> dict[str, object]:
        return json.loads(cli("query", "client", cid, "--json").stdout)

    a = client(A)
    assert (a["industry"], a["phone"], a["website"], a["status"]) == ("Energy", None, "https://a.example", "active")
    assert client(B)["deleted"] is True
    c = client(C)
    assert (c["name"], c["deleted"], c["status"]) == ("Client C again", False, "active")
    assert client(D)["rating"] == "Hot"
    missing = cli("query", "client", "001000000000009AAA", check=False)
    assert missing.returncode == 1 and "no client" in missing.stderr
    history = json.loads(cli("query", "history", C, "--json").stdout)
    assert [h["new_status"] for h in history] == ["inactive", "active"]

    dsn = worker_env["WORKER_POSTGRES__URL"]
    live = [r[:-1] for r in rows(dsn, COMPARED)]  # all columns but projected_at
    cli("projections", "rebuild", "--source", "event-store")
    assert [r[:-1] for r in rows(dsn, COMPARED)] == live
    cli("projections", "rebuild", "--source", "topic")
    assert [r[:-1] for r in rows(dsn, COMPARED)] == live

    produce(worker_env["WORKER_KAFKA__BOOTSTRAP_SERVERS"], worker_env["WORKER_KAFKA__CDC_TOPIC"], changes)
    cli("run", "all", "--exit-when-idle", "3", timeout=240)  # redelivered changes: nothing changes
    assert [r[:-1] for r in rows(dsn, COMPARED)] == live
