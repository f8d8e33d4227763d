"""Commands: the application's input contract, validated structurally by pydantic.

The Salesforce translator builds them; Salesforce field names never appear here: attributes are the client's
(``name``, ``billing_address.city``, ``extra.Custom__c``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

_ID = re.compile(r"^[a-zA-Z0-9]{18}$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# What PostgreSQL (bigint, jsonb) and Avro (long) can hold: a value beyond it is refused here, not by the store.
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Position = Annotated[int, Field(ge=0, le=INT64_MAX)]
MAX_TEXT = 131_072  # Salesforce's longest text (Long and Rich Text Area fields)
# A text every store takes as it is: no NUL character (PostgreSQL's text and jsonb have none) and no longer than
# Salesforce's longest; checked by pydantic's core as the model is built (the pattern is Rust's: `$` is the end).
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=NO_NUL)]
_UNVALIDATED = "unvalidated"


def _client_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"client id must be 18 alphanumeric characters, got {value!r}")
    return value


ClientId = Annotated[str, AfterValidator(_client_id)]


class _Frozen(BaseModel):
    """`validated` is true for a model pydantic validated (built by its constructor); `model_construct` skips
    validation and marks the model unvalidated, so the bus validates such a command (and the value rules check
    such change metadata)."""

    # NaN and ±Infinity are refused: neither jsonb nor JSON has them.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:  # type: ignore[override]
        model = super().model_construct(_fields_set, **values)
        # The mark sits in pydantic's per-instance private slot (compared by ==, kept by model_copy) rather than in
        # a declared private attribute, which would cost every validated model an initialisation step. (The
        # ignore: pydantic's mypy plugin types model_construct per model, from its fields.)
        object.__setattr__(model, "__pydantic_private__", {_UNVALIDATED: True})
        return model

    @property
    def validated(self) -> bool:
        # read pydantic's private store directly: an attribute read goes through BaseModel.__getattr__ (~20x
        # slower, and the bus asks once per command, the value rules once per change metadata)
        private = self.__pydantic_private__
        return not (private and private.get(_UNVALIDATED))


class ChangeMetadata(_Frozen):
    """Where a change comes from: Salesforce's change identity plus its Kafka coordinates. Every value is
    storable once the model is validated (64-bit integers, `Text`s), so the business rules skip a validated one."""

    transaction_key: Text = Field(min_length=1)
    sequence_number: Position
    commit_timestamp_ms: Position
    commit_number: Position | None = None
    commit_user: Text | None = None
    change_type: Text
    change_origin: Text = ""
    replay_id: Text | None = None
    event_id: Text | None = Field(default=None, description="Pub/Sub ProducerEvent id when known.")
    last_modified_ms: Int64 | None = None
    source_topic: Text | None = None
    source_partition: Position | None = None
    source_offset: Position | None = None
    correlation_id: Text = Field(min_length=1, description="Root: the Salesforce transaction key.")
    causation_id: Text = Field(min_length=1, description="Parent: the CDC message id (topic:partition:offset).")
    traceparent: Text | None = None


class AddressData(_Frozen):
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    state_code: str | None = None
    country_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    geocode_accuracy: str | None = None


class ClientData(_Frozen):
    """A full client record in the client's own terms (CREATE, UNDELETE, resync)."""

    name: str | None = None
    type: str | None = None
    industry: str | None = None
    phone: str | None = None
    website: str | None = None
    billing_address: AddressData = AddressData()
    owner_id: str | None = None
    annual_revenue: float | None = None
    employees: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    rating: str | None = None
    account_source: str | None = None
    parent_id: str | None = None
    active: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


def is_client_attribute(path: str) -> bool:
    """Whether ``path`` names a client attribute a change can set: a plain one (``phone``), an address part
    (``billing_address.city``) or an unmapped field's (``extra.Region__c``)."""
    head, dot, rest = path.partition(".")
    if not dot:
        return head in ClientData.model_fields and head not in ("billing_address", "extra")
    return (head == "billing_address" and rest in AddressData.model_fields) or (head == "extra" and bool(rest))


class Command(_Frozen):
    """Base of every command."""


class RegisterClient(Command):
    kind: Literal["RegisterClient"] = "RegisterClient"
    client_id: ClientId
    data: ClientData
    change: ChangeMetadata


class ChangeClientDetails(Command):
    """A partial update: ``changes`` maps attribute path -> new value (None = set to null);
    ``diffs`` maps attribute path -> unified diff of a long text (Salesforce sends
    a diff instead of the whole value for large text fields in `diffFields`)."""

    kind: Literal["ChangeClientDetails"] = "ChangeClientDetails"
    client_id: ClientId
    changes: dict[str, Any] = Field(default_factory=dict)
    diffs: dict[str, str] = Field(default_factory=dict)
    change: ChangeMetadata


class DeleteClient(Command):
    kind: Literal["DeleteClient"] = "DeleteClient"
    client_id: ClientId
    change: ChangeMetadata


class RestoreClient(Command):
    kind: Literal["RestoreClient"] = "RestoreClient"
    client_id: ClientId
    data: ClientData
    change: ChangeMetadata


class MarkClientForResync(Command):
    """Gap event (or a dead-lettered change): hold later changes back until a resync."""

    kind: Literal["MarkClientForResync"] = "MarkClientForResync"
    client_id: ClientId
    reason: str
    change: ChangeMetadata | None = None


class ResyncClients(Command):
    """Fetch these clients from Salesforce and apply the full records."""

    kind: Literal["ResyncClients"] = "ResyncClients"
    client_ids: tuple[ClientId, ...] = Field(min_length=1)
    reason: str
    change: ChangeMetadata | None = None


class ResyncAllClients(Command):
    """Overflow or wildcard id: re-read every Account, deletions included."""

    kind: Literal["ResyncAllClients"] = "ResyncAllClients"
    reason: str
    change: ChangeMetadata | None = None

