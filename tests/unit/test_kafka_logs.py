"""librdkafka's lines and errors reach the JSON logger, and an outage is a few lines, not one per retry."""

from __future__ import annotations

import logging

import pytest

from worker import logs
from worker.config import KafkaSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeKafkaError:
    def __init__(self, name: str, text: str, fatal: bool = False) -> None:
        self._name, self._text, self._fatal = name, text, fatal

    def name(self) -> str:
        return self._name

    def str(self) -> str:
        return self._text

    def fatal(self) -> bool:
        return self._fatal


def refused(after_ms: int) -> FakeKafkaError:
    return FakeKafkaError("_TRANSPORT", f"127.0.0.1:19092/1: Connect to ipv4#127.0.0.1:19092 failed: Connection "
                                        f"refused (after {after_ms}ms in state CONNECT)")


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "worker.kafka.client"]


def test_every_client_config_routes_librdkafka_logs_and_errors_through_the_worker() -> None:
    conf = KafkaSettings().client_config()
    assert conf["logger"] is logs.LIBRDKAFKA and callable(conf["error_cb"])
    assert repr(conf) == repr(KafkaSettings().client_config())  # cached admin clients key on it


def test_a_broker_outage_is_one_line_per_state_change_plus_a_summary(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    errors = logs.KafkaErrors(logs.Repeats(logs.KAFKA_CLIENT, every_s=60, clock=clock, timer=False))
    repeats = errors._repeats
    with caplog.at_level(logging.INFO, logger="worker.kafka.client"):
        for i in range(1200):  # a client retrying every 50 ms for a minute
            errors(refused(i % 3))
            if i == 10:
                errors(FakeKafkaError("_ALL_BROKERS_DOWN", "1/1 brokers are down"))
        clock.now += 60
        repeats.summarize()
        clock.now += 60
        repeats.summarize()  # nothing for a whole period: the outage is over
    lines = messages(caplog)
    assert len(lines) == 5, lines
    assert lines[0].startswith("kafka client error _TRANSPORT") and "_ALL_BROKERS_DOWN" in lines[1]
    assert lines[2].startswith("1199 more in the last 60s: _TRANSPORT")
    assert {line.split(": ")[1] for line in lines[3:]} == {"_TRANSPORT", "_ALL_BROKERS_DOWN"}
    assert all(", over: " in line for line in lines[3:])


def test_a_fatal_error_is_always_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = logs.KafkaErrors(logs.Repeats(logs.KAFKA_CLIENT, timer=False))
    with caplog.at_level(logging.INFO, logger="worker.kafka.client"):
        for _ in range(2):
            errors(FakeKafkaError("_FENCED", "fenced by a newer instance", fatal=True))
    assert [r.levelno for r in caplog.records if r.name == "worker.kafka.client"] == [logging.ERROR] * 2


def test_librdkafka_lines_of_every_client_count_as_one_kind() -> None:
    clock = Clock()
    repeats = logs.Repeats(logs.KAFKA_CLIENT, clock=clock, timer=False)
    keep = logs.RepeatFilter(repeats)

    def line(client: str, after_ms: int, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("worker.kafka.librdkafka", level, __file__, 1, "%s [%s] %s",
                                 ("FAIL", client, f"[thrd:127.0.0.1:19092/1]: 127.0.0.1:19092/1: Connect failed: "
                                                  f"Connection refused (after {after_ms}ms in state CONNECT)"), None)

    assert keep.filter(line("worker#consumer-1", 0))
    assert not keep.filter(line("worker#producer-2", 3))
    assert not keep.filter(line("worker#consumer-1", 1))
    assert keep.filter(line("worker#consumer-1", 0, logging.WARNING))  # another level is another kind
