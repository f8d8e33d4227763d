"""The one frozen settings object, read at the edge (env prefix ``WORKER_``, optional ``.env``).

Nothing here reads the environment at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.application.commands import is_client_attribute
from worker.logs import kafka_client_logging


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one readable line naming it."""


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    client_id: str = "salesforce-cdc-worker"
    ingest_group: str = "client-ingest"
    projector_group: str = "client-projector"
    group_instance_id: str | None = Field(
        default=None, description="Static membership id (group.instance.id); one per replica."
    )
    cdc_topic: str = "salesforce.cdc.account"
    events_topic: str = "client.events"
    dlq_suffix: str = ".dlq"
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    dlq_retention_ms: int = Field(default=30 * 24 * 3600 * 1000, ge=-1)
    batch_size: int = Field(default=500, ge=1, le=100_000)
    batch_timeout_s: float = Field(default=0.5, gt=0)
    batch_linger_s: float = Field(
        default=0.02, ge=0, description="once a batch has its first message, how long it waits for more (latency"
        " against batch size under a steady feed; a backlog fills a batch at once anyway, and the broker already"
        " gathers up to fetch_wait_max_ms of records into each fetch)")
    fetch_queue_kbytes: int = Field(
        default=4096, ge=1024, description="librdkafka queued.max.messages.kbytes: prefetch memory per consumer"
        " (4 MiB: seconds of work for a 500-message batch; more is resident memory, not speed)."
    )
    # A caught-up consumer otherwise sends a fetch for every few records the producers add (librdkafka: 1 byte,
    # 500 ms): hundreds of fetches per second per consumer, broker CPU taken from the roles on a small host.
    fetch_min_bytes: int = Field(
        default=16_384, ge=1, le=100_000_000, description="librdkafka fetch.min.bytes: the broker holds a fetch until"
        " this much has arrived or fetch_wait_max_ms has passed (a backlog fills it at once; 16 KiB is some 40"
        " records of a CDC topic: a few dozen fetches a second at a thousand records a second, each hop waiting"
        " tens of ms, not the whole fetch_wait_max_ms)")
    fetch_wait_max_ms: int = Field(
        default=100, ge=0, le=300_000, description="librdkafka fetch.wait.max.ms: the longest the broker holds a"
        " fetch for fetch_min_bytes (the latency a quiet topic adds per hop)")
    session_timeout_ms: int = Field(default=45_000, ge=1000)
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    cdc_format: str = Field(
        default="auto", description="Input format of the CDC topic: auto or a named format (see `worker cdc parse`)."
    )
    schema_registry_url: str | None = None

    @property
    def cdc_dlq_topic(self) -> str:
        return self.cdc_topic + self.dlq_suffix

    @property
    def events_dlq_topic(self) -> str:
        return self.events_topic + self.dlq_suffix

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by every client (security, logging and error callback included)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol.value,
            **kafka_client_logging(),
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf


class PostgresSettings(_Section):
    url: SecretStr = SecretStr("postgresql://worker@127.0.0.1:15432/worker")
    pool_size: int = Field(default=4, ge=1, le=100)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    require_durable: bool = Field(
        default=False, description="Refuse to start on a server with fsync, synchronous_commit or full_page_writes "
                                   "off (otherwise: one warning, worker_database_durable 0)."
    )
    dead_peer_timeout_s: float = Field(
        default=60.0, ge=1, description="A frozen or cut-off relay loses its lock (its session) after about this."
    )


class SalesforceAuth(StrEnum):
    PASSWORD = "password"
    SESSION = "session"
    CLIENT_CREDENTIALS = "client_credentials"
    JWT = "jwt"
    NONE = "none"


class SalesforceSettings(_Section):
    auth: SalesforceAuth = SalesforceAuth.NONE
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    session_id: SecretStr | None = None
    instance_url: str | None = None
    consumer_key: str | None = None
    consumer_secret: SecretStr | None = None
    private_key_file: str | None = None
    domain: str = "login"
    api_version: str = "62.0"
    timeout_s: float = Field(default=10.0, gt=0)
    batch_size: int = Field(default=200, ge=1, le=2000)
    own_client_id: str | None = Field(
        default=None, description="Our Sforce-Call-Options client id; changes carrying it are echoes and dropped."
    )
    max_session_refreshes: int = Field(default=1, ge=0, le=5)
    api_budget_share: float = Field(
        default=0.5, gt=0, le=1, description="Share of the org's daily API requests we may use; past it we back off."
    )
    api_budget_recheck_s: float = Field(
        default=300.0, gt=0, description="While over the budget share, one call per period rereads the usage."
    )
    bulk_page_size: int = Field(default=10_000, ge=1, le=1_000_000, description="Rows per Bulk 2.0 result page.")


class RetrySettings(_Section):
    initial_backoff_s: float = Field(default=0.2, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, description="Attempts per call before the fault is escalated.")
    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_timeout_s: float = Field(default=30.0, gt=0)
    conflict_retries: int = Field(default=5, ge=0)


def backoff(retry: RetrySettings) -> Any:
    """The one backoff policy: exponential from `initial_backoff_s`, capped, with proportional jitter."""
    from tenacity import wait_exponential_jitter

    return wait_exponential_jitter(
        multiplier=retry.initial_backoff_s, max=retry.max_backoff_s, jitter=retry.initial_backoff_s
    )


class DomainSettings(_Section):
    prospect_types: tuple[str, ...] = ("Prospect",)
    active_values: tuple[str, ...] = ("Yes",)
    inactive_values: tuple[str, ...] = ("No",)
    field_mapping: dict[str, str] = Field(
        default_factory=dict, description="Overrides of Salesforce field -> client attribute."
    )

    @field_validator("field_mapping")
    @classmethod
    def _targets_are_attributes(cls, mapping: dict[str, str]) -> dict[str, str]:
        wrong = sorted(target for target in mapping.values() if not is_client_attribute(target))
        if wrong:
            raise ValueError(f"targets that name no client attribute: {', '.join(map(repr, wrong))} (a plain"
                             " attribute such as phone, billing_address.<part> or extra.<name>)")
        return mapping


class FeatureFlags(_Section):
    echo_suppression: bool = True
    resync_enabled: bool = True


class ResyncSettings(_Section):
    """The resync role: reads clients from Salesforce when CDC cannot be trusted for them."""

    batch_size: int = Field(default=200, ge=1, le=2000, description="Clients read per sObject Collections call.")
    lease_s: float = Field(default=120.0, gt=0, description="A claim expires after this (a dead worker's work).")
    poll_interval_s: float = Field(default=1.0, gt=0, description="Wait between looks at an empty queue.")
    max_attempts: int = Field(default=8, ge=1, description="Failed reads of a client before it shows as failing.")
    backoff_s: float = Field(default=5.0, gt=0, description="First wait after a failed read; doubles each time.")
    failing_retry_s: float = Field(default=3600.0, gt=0, description="Wait between reads of a failing client.")
    scan_poll_s: float = Field(default=2.0, gt=0, description="Wait between polls of a Bulk API query job.")


class ObservabilitySettings(_Section):
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Prometheus /metrics; 0 turns it off.")
    health_port: int = Field(default=8080, ge=0, le=65535, description="/healthz and /readyz; 0 turns it off.")
    bind_address: str = Field(
        default="127.0.0.1", description="Address of the metrics and health servers (0.0.0.0 in containers)."
    )
    otlp_endpoint: str | None = None
    trace_sample_ratio: float | None = Field(
        default=None, ge=0, le=1,
        description="Share of new traces sampled (parent-based: a sampled upstream traceparent is always followed). "
                    "Unset: 0.01 with an OTLP endpoint; without one, tracing is off.",
    )
    log_format: str = Field(default="auto", pattern="^(auto|json|text)$")
    log_level: str = "INFO"


class Settings(BaseSettings):
    """Every knob of the worker. Nested sections use ``__``: ``WORKER_KAFKA__BOOTSTRAP_SERVERS``."""

    model_config = SettingsConfigDict(
        env_prefix="WORKER_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    salesforce: SalesforceSettings = SalesforceSettings()
    retry: RetrySettings = RetrySettings()
    domain: DomainSettings = DomainSettings()
    features: FeatureFlags = FeatureFlags()
    resync: ResyncSettings = ResyncSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    snapshot_interval: int = Field(default=100, ge=1, description="Take a snapshot every N events of a stream.")
    dlq_max_replays: int = Field(default=3, ge=1)
    aggregate_cache_size: int = Field(
        default=1_000_000, ge=0, description="At most this many clients kept in memory between batches (0: no"
        " cache, load every batch); aggregate_cache_mib is the bound that counts."
    )
    aggregate_cache_mib: float = Field(
        default=96.0, ge=0, description="Memory for the clients kept between batches, MiB (estimated from their"
        " measured size; 0: bounded by aggregate_cache_size alone)."
    )
    gc_threshold: int = Field(
        default=50_000, ge=0, description="Allocations between two young-generation garbage collections (Python's"
        " default is 700; 0 keeps it). With the aggregate cache holding many objects, the default spends ~13% of"
        " deciding in the collector and pauses a batch for 0.2 s at each full collection."
    )


_SECRET_HINT = re.compile("PASSWORD|SECRET|TOKEN|SESSION_ID|URL|KEY")


ENV_PREFIX = "WORKER_"

# What each Salesforce auth mode cannot log in without (the fields, as WORKER_SALESFORCE__<NAME>).
AUTH_NEEDS: dict[SalesforceAuth, tuple[str, ...]] = {
    SalesforceAuth.PASSWORD: ("username", "password"),
    SalesforceAuth.CLIENT_CREDENTIALS: ("consumer_key", "consumer_secret"),
    SalesforceAuth.JWT: ("username", "consumer_key", "private_key_file"),
    SalesforceAuth.SESSION: ("session_id", "instance_url"),
    SalesforceAuth.NONE: (),
}


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; raise :class:`SettingsError` with one line naming the bad setting."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise SettingsError(unknown[0])
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "__".join(str(part) for part in first["loc"]).upper()
        shown = "" if _SECRET_HINT.search(where) else f" (got {first.get('input')!r})"
        raise SettingsError(f"invalid setting WORKER_{where}: {first['msg']}{shown}") from None
    missing = missing_credentials(settings.salesforce)
    if missing:
        raise SettingsError(missing)
    return settings


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per ``WORKER_*`` variable that names no setting (a typo would otherwise be silently ignored)."""
    known = _setting_names()
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or _names_a_setting(upper[len(ENV_PREFIX):].lower().split("__")):
            continue
        close = difflib.get_close_matches(upper, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (`worker config show` lists the settings)"
        problems.append(f"unknown setting {name}{hint}")
    return problems


def _names_a_setting(parts: list[str]) -> bool:
    """WORKER_FIELD, WORKER_SECTION (as JSON) or WORKER_SECTION__FIELD; below a dict field, any key."""
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return i == len(parts) - 1 or getattr(annotation, "__origin__", None) is dict
    return True


def _setting_names() -> list[str]:
    names = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names += [f"{ENV_PREFIX}{name}__{sub}".upper() for sub in section.model_fields]
        else:
            names.append(f"{ENV_PREFIX}{name}".upper())
    return names


def missing_credentials(salesforce: SalesforceSettings) -> str | None:
    """One line when the auth mode lacks what it logs in with, else None."""
    lacking = [name for name in AUTH_NEEDS[salesforce.auth] if not getattr(salesforce, name)]
    if not lacking:
        return None
    names = " and ".join(f"WORKER_SALESFORCE__{name.upper()}" for name in lacking)
    return f"invalid setting WORKER_SALESFORCE__AUTH: {salesforce.auth.value} needs {names}"



def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets masked."""
    return settings.model_dump(mode="json")
