"""Every failure classified once: poison (dead-letter and go on), transient (back off, retry,
never skip), or a bug (stop non-zero, commit nothing past it).

A value the database refuses in one row (`ROW_DATA_ERRORS`) is a bug when it reaches the worker's loop: the
value rules should have refused it first. The ingest and projector catch it below the loop, isolate the
message it came from and dead-letter it, so even then one message never stops the pipeline."""

from __future__ import annotations

from enum import StrEnum

import psycopg
import pydantic
import requests
from confluent_kafka import KafkaException

from worker.adapters.kafka.dlq import DeadLetterNotDelivered
from worker.adapters.kafka.producer import PublishFailed
from worker.adapters.salesforce.api_errors import SalesforceUnavailable
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.application.errors import ConcurrencyConflict, InvalidCommand, TransientFailure
from worker.application.validation import UntranslatableChange
from worker.domain.errors import DomainError


class Kind(StrEnum):
    POISON = "poison"
    TRANSIENT = "transient"
    BUG = "bug"


TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.errors.AdminShutdown,
    psycopg.InterfaceError,
    SalesforceUnavailable,
    TransientFailure,
    ConcurrencyConflict,
    DeadLetterNotDelivered,
    PublishFailed,
    ConnectionError,
    requests.RequestException,
    TimeoutError,
)
POISON_TYPES: tuple[type[BaseException], ...] = (
    ChangeEventParseError,
    pydantic.ValidationError,
    InvalidCommand,
    UntranslatableChange,
    DomainError,
)
# One row's data refused by PostgreSQL: a value out of range or of the wrong type for its column, a NUL
# character (refused by psycopg before it is sent), text that is not valid JSON for jsonb, a NOT NULL or CHECK;
# or a text with no UTF-8 form (an unpaired surrogate), which psycopg cannot encode to send.
ROW_DATA_ERRORS: tuple[type[BaseException], ...] = (
    UnicodeEncodeError,
    psycopg.DataError,
    psycopg.errors.DatatypeMismatch,
    psycopg.errors.NotNullViolation,
    psycopg.errors.CheckViolation,
)


def classify(error: BaseException) -> Kind:
    if isinstance(error, POISON_TYPES):
        return Kind.POISON
    if isinstance(error, TRANSIENT_TYPES):
        return Kind.TRANSIENT
    if isinstance(error, KafkaException):
        kafka_error = error.args[0] if error.args else None
        retriable = getattr(kafka_error, "retriable", lambda: False)()
        return Kind.TRANSIENT if retriable else Kind.BUG
    return Kind.BUG
