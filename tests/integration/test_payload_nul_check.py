"""Migration 010: the check that keeps an escaped NUL out of a stored payload looks for the text `\\u0000` before it
runs its regular expression. The same payloads pass and fail as under migration 007's check, on the real server,
and the events stored before it are validated."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

import psycopg
import pytest

from worker.adapters.postgres.migrate import migrate

pytestmark = pytest.mark.integration

# Each a valid JSON string escape or text: any concatenation is a JSON string body.
_TOKENS = ["\\\\", "\\u0000", "u0000", "a", '\\"', "\\n", "\\u0041", "é", "\\ud83d\\ude00"]
_CASES = [
    ('{"a":"\\u0000"}', False),  # an escaped NUL
    ('{"a":"\\\\u0000"}', True),  # an escaped backslash, then the text u0000
    ('{"a":"\\\\\\u0000"}', False),  # an escaped backslash, then an escaped NUL
    ('{"\\u0000":1}', False),  # in a key
    ('{"a":"x\\u00001"}', False),
    ('{"a":"u0000"}', True),
    ('{"a":1}', True),
]


def _payloads() -> list[str]:
    rng = random.Random(7)
    def body() -> str:
        return "".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, 6)))

    return [text for text, _ in _CASES] + [f'{{"a":"{body()}","b":[1,"{body()}"]}}' for _ in range(300)]


def _accepted(conn: psycopg.Connection[tuple[object, ...]], payloads: list[str], first_version: int) -> list[bool]:
    """Whether the events table takes each payload (each in its own savepoint; the accepted ones stay)."""
    accepted = []
    for n, payload in enumerate(payloads):
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, payload, metadata)"
                    " VALUES ('001000000000001AAA', %s, %s, 'ClientRegistered', 1, %s, '{}')",
                    (first_version + n, uuid.uuid4(), payload))
            accepted.append(True)
        except psycopg.errors.CheckViolation:
            accepted.append(False)
    return accepted


def test_the_cheaper_check_takes_and_refuses_what_the_old_one_did(new_database: Callable[[], str]) -> None:
    url = new_database()
    migrate(url, up_to=9)
    payloads = _payloads()
    with psycopg.connect(url, autocommit=True) as conn:
        before = _accepted(conn, payloads, 1)
    assert before[:len(_CASES)] == [ok for _, ok in _CASES]
    assert 0 < sum(before) < len(before)  # both kinds among the generated ones

    applied, _ = migrate(url)  # 010 validates the rows 009 took
    assert [m.version for m in applied] == [10]
    with psycopg.connect(url, autocommit=True) as conn:
        definition = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                                  " WHERE conname = 'events_payload_without_nul'").fetchone()
        assert definition is not None and "strpos" in definition[0] and "NOT VALID" not in definition[0]
        after = _accepted(conn, payloads, 10_000)
    assert after == before
