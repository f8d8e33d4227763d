"""The test stack's selection: existing variables > containers when asked and Docker answers > the local stack."""

from __future__ import annotations

import pytest

from tests.stack_select import Stack, StackError, choose, main

BOTH = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "DATABASE_URL": "postgresql://127.0.0.1/x"}


def no_docker() -> bool:
    return False


def docker() -> bool:
    return True


def never_asked() -> bool:
    raise AssertionError("Docker was asked although the choice did not depend on it")


def test_variables_already_set_win_over_everything() -> None:
    assert choose(BOTH, never_asked) is Stack.ENVIRONMENT
    assert choose({**BOTH, "STACK": "containers"}, never_asked) is Stack.ENVIRONMENT


def test_one_variable_alone_does_not_count() -> None:
    assert choose({"DATABASE_URL": "postgresql://127.0.0.1/x"}, never_asked) is Stack.LOCAL


def test_containers_when_asked_for_and_docker_answers() -> None:
    assert choose({"STACK": "containers"}, docker) is Stack.CONTAINERS


def test_containers_asked_for_without_docker_is_a_clear_error_not_a_fallback() -> None:
    with pytest.raises(StackError, match="STACK=containers needs a Docker engine and none answers"):
        choose({"STACK": "containers"}, no_docker)


def test_the_default_is_the_local_stack_whatever_docker_says() -> None:
    assert choose({}, never_asked) is Stack.LOCAL
    assert choose({"STACK": "local"}, never_asked) is Stack.LOCAL


def test_an_unknown_stack_is_refused() -> None:
    with pytest.raises(StackError, match="STACK='docker'"):
        choose({"STACK": "docker"}, never_asked)


def test_main_reports_the_error_in_one_line_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STACK", "containers")
    monkeypatch.setattr("tests.stack_select.docker_answers", no_docker)
    assert main(["true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stack_select: STACK=containers needs a Docker engine") and err.count("\n") == 1
