"""PostgreSQL sessions are named after the worker command that opened them (pg_stat_activity tells the roles apart),
unless the user named them."""

from __future__ import annotations

import argparse
import threading

import psycopg
import pytest

from tests.conftest import wait_for
from worker.entrypoints import cli


def _names(database_url: str) -> list[str]:
    with psycopg.connect(database_url, application_name="test-observer") as conn:
        rows = conn.execute("SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid()").fetchall()
    return [name for (name,) in rows]


def test_a_running_role_s_sessions_carry_its_command_as_application_name(
    worker_env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in worker_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGAPPNAME", raising=False)
    codes: list[int] = []
    relay = threading.Thread(target=lambda: codes.append(cli.main(["run", "relay", "--exit-when-idle", "3"])))
    relay.start()
    try:
        names = wait_for(lambda: [n for n in _names(database_url) if n.startswith("salesforce-cdc-worker")], 30,
                         "the relay's session in pg_stat_activity")
        assert set(names) == {"salesforce-cdc-worker run relay"}
    finally:
        relay.join(60)
    assert codes == [0]


def test_a_name_the_user_set_is_kept_and_ours_follows_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGAPPNAME", raising=False)
    monkeypatch.setattr(cli, "_named", None)
    assert cli.name_sessions(argparse.Namespace(command="dlq")) == "salesforce-cdc-worker dlq"
    # a second command in the same process (tests, embedding) is named after itself, not the first
    assert cli.name_sessions(argparse.Namespace(command="run", role="ingest")) == "salesforce-cdc-worker run ingest"
    monkeypatch.setenv("PGAPPNAME", "billing-sync")
    assert cli.name_sessions(argparse.Namespace(command="run", role="ingest")) == "billing-sync"


def test_an_application_name_in_the_url_wins_over_ours(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGAPPNAME", raising=False)
    monkeypatch.setattr(cli, "_named", None)
    cli.name_sessions(argparse.Namespace(command="query"))
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("salesforce-cdc-worker query",)
    with psycopg.connect(f"{database_url}?application_name=crm-dashboard") as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("crm-dashboard",)
