"""Settings fail at start with one line naming the problem; what is allowed but odd is a warning."""

from __future__ import annotations

import pytest

from worker.bootstrap import resync_disabled_reason
from worker.config import SettingsError, load_settings, unknown_variables


def fails_with(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_unknown_worker_variable_is_refused_with_the_setting_it_probably_meant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    message = fails_with(monkeypatch, {"WORKER_KAFKA__BATCH_SIZ": "10"})
    assert message == "unknown setting WORKER_KAFKA__BATCH_SIZ (did you mean WORKER_KAFKA__BATCH_SIZE?)"


def test_a_single_underscore_where_a_section_needs_two_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "did you mean WORKER_KAFKA__BOOTSTRAP_SERVERS" in fails_with(
        monkeypatch, {"WORKER_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"})


def test_every_real_setting_a_whole_section_and_a_field_mapping_key_are_known() -> None:
    assert unknown_variables({
        "WORKER_KAFKA__BATCH_SIZE": "1", "WORKER_SNAPSHOT_INTERVAL": "5", "worker_postgres__url": "x",
        "WORKER_RETRY": "{}", "WORKER_DOMAIN__FIELD_MAPPING__Region__c": "region", "OTHER_VARIABLE": "x",
    }) == []
    assert unknown_variables({"WORKER_SNAPSHOT_INTERVAL__X": "1", "WORKER_KAFKA__BATCH_SIZE__X": "1"}) != []


@pytest.mark.parametrize(("auth", "given", "named"), [
    ("password", {"WORKER_SALESFORCE__USERNAME": "u"}, "password needs WORKER_SALESFORCE__PASSWORD"),
    ("password", {}, "password needs WORKER_SALESFORCE__USERNAME and WORKER_SALESFORCE__PASSWORD"),
    ("client_credentials", {"WORKER_SALESFORCE__CONSUMER_KEY": "k"},
     "client_credentials needs WORKER_SALESFORCE__CONSUMER_SECRET"),
    ("jwt", {"WORKER_SALESFORCE__USERNAME": "u", "WORKER_SALESFORCE__CONSUMER_KEY": "k"},
     "jwt needs WORKER_SALESFORCE__PRIVATE_KEY_FILE"),
    ("session", {"WORKER_SALESFORCE__SESSION_ID": "s"}, "session needs WORKER_SALESFORCE__INSTANCE_URL"),
    ("session", {"WORKER_SALESFORCE__INSTANCE_URL": "https://x"}, "session needs WORKER_SALESFORCE__SESSION_ID"),
])
def test_an_auth_mode_without_its_credentials_is_refused(
    monkeypatch: pytest.MonkeyPatch, auth: str, given: dict[str, str], named: str
) -> None:
    message = fails_with(monkeypatch, {"WORKER_SALESFORCE__AUTH": auth, **given})
    assert message == f"invalid setting WORKER_SALESFORCE__AUTH: {named}"


def test_an_auth_mode_with_its_credentials_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_SALESFORCE__AUTH", "session")
    monkeypatch.setenv("WORKER_SALESFORCE__SESSION_ID", "s")
    monkeypatch.setenv("WORKER_SALESFORCE__INSTANCE_URL", "http://127.0.0.1:1")
    assert load_settings().salesforce.auth.value == "session"


def test_resync_without_salesforce_credentials_loads_and_the_resync_role_says_why_it_is_off() -> None:
    settings = load_settings()  # the defaults: resync enabled, auth none: allowed, not an error
    assert settings.salesforce.auth.value == "none" and settings.features.resync_enabled
    assert resync_disabled_reason(settings, None) == "no Salesforce credentials (WORKER_SALESFORCE__AUTH=none)"


def test_a_batch_size_beyond_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka has no max.poll.records (a Java client setting): the batch size's own bound is the limit."""
    assert fails_with(monkeypatch, {"WORKER_KAFKA__BATCH_SIZE": "100001"}).startswith(
        "invalid setting WORKER_KAFKA__BATCH_SIZE: Input should be less than or equal to 100000")


def test_a_running_role_collects_garbage_less_often_and_sets_start_up_objects_aside() -> None:
    import gc

    from worker.bootstrap import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(0)
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
        tune_gc(load_settings(_env_file=None).gc_threshold)
        assert gc.get_threshold() == (50_000, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_fetch_settings_reach_every_consumer_and_a_zero_minimum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.adapters.kafka.consumer import consumer_config

    monkeypatch.setenv("WORKER_KAFKA__FETCH_MIN_BYTES", "1")
    monkeypatch.setenv("WORKER_KAFKA__FETCH_WAIT_MAX_MS", "20")
    conf = consumer_config(load_settings().kafka, "g")
    assert (conf["fetch.min.bytes"], conf["fetch.wait.max.ms"]) == (1, 20)
    assert "WORKER_KAFKA__FETCH_MIN_BYTES" in fails_with(monkeypatch, {"WORKER_KAFKA__FETCH_MIN_BYTES": "0"})


def test_a_field_mapping_target_that_names_no_client_attribute_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    message = fails_with(monkeypatch, {"WORKER_DOMAIN__FIELD_MAPPING": '{"Region__c": "extra", "X__c": "phone"}'})
    assert message.startswith("invalid setting WORKER_DOMAIN__FIELD_MAPPING: ")
    assert "targets that name no client attribute: 'extra'" in message and "'phone'" not in message.split("(")[0]
    monkeypatch.setenv("WORKER_DOMAIN__FIELD_MAPPING",
                       '{"Region__c": "extra.Region", "X__c": "phone", "Y__c": "billing_address.city"}')
    assert load_settings().domain.field_mapping["Y__c"] == "billing_address.city"
