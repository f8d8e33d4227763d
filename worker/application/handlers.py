"""Command handlers: load, call one aggregate method, record. The registry below is the table of contents."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.application.commands import (
    AddressData,
    ChangeClientDetails,
    ChangeMetadata,
    ClientData,
    Command,
    DeleteClient,
    MarkClientForResync,
    RegisterClient,
    RestoreClient,
    ResyncAllClients,
    ResyncClients,
)
from worker.application.unit_of_work import ClientBatch
from worker.domain import Address, ChangeRef, ClientDetails, StatusRule, TextDiff
from worker.domain.values import new_change_ref


@dataclass(frozen=True)
class HandlerContext:
    batch: ClientBatch
    rule: StatusRule


Handler = Callable[[Any, HandlerContext], int]


def register_client(cmd: RegisterClient, ctx: HandlerContext) -> int:
    client = ctx.batch.get(cmd.client_id)
    events = client.register(to_details(cmd.data), to_ref(cmd.client_id, cmd.change), ctx.rule)
    return ctx.batch.record(client, events, event_metadata(cmd, cmd.change))


def change_client_details(cmd: ChangeClientDetails, ctx: HandlerContext) -> int:
    client = ctx.batch.get(cmd.client_id)
    diffs = {path: TextDiff(patch) for path, patch in cmd.diffs.items()}
    ref = to_ref(cmd.client_id, cmd.change)
    held_back = client.holds_back(ref)
    events = client.change_details(cmd.changes, ref, ctx.rule, diffs)
    if held_back:
        _renew_resync(ctx, cmd.client_id)
    return ctx.batch.record(client, events, event_metadata(cmd, cmd.change))


def delete_client(cmd: DeleteClient, ctx: HandlerContext) -> int:
    client = ctx.batch.get(cmd.client_id)
    ref = to_ref(cmd.client_id, cmd.change)
    if client.holds_back(ref):
        _renew_resync(ctx, cmd.client_id)
    events = client.delete(ref)
    return ctx.batch.record(client, events, event_metadata(cmd, cmd.change))


def restore_client(cmd: RestoreClient, ctx: HandlerContext) -> int:
    client = ctx.batch.get(cmd.client_id)
    events = client.restore(to_details(cmd.data), to_ref(cmd.client_id, cmd.change), ctx.rule)
    return ctx.batch.record(client, events, event_metadata(cmd, cmd.change))


def _renew_resync(ctx: HandlerContext, client_id: str) -> None:
    """A change held back by a client waiting for its resync: a read already under way may predate it, so the
    request is renewed (a new generation), and the client is read again after that read completes."""
    ctx.batch.request_resync(client_id, "a change arrived while the client waited for a resync")


def mark_client_for_resync(cmd: MarkClientForResync, ctx: HandlerContext) -> int:
    client = ctx.batch.get(cmd.client_id)
    ref = to_ref(cmd.client_id, cmd.change) if cmd.change else None
    events = client.mark_for_resync(cmd.reason, ref)
    # Even when the client is already dirty, make sure a fetch is queued.
    ctx.batch.request_resync(cmd.client_id, cmd.reason)
    return ctx.batch.record(client, events, event_metadata(cmd, cmd.change))


def resync_clients(cmd: ResyncClients, ctx: HandlerContext) -> int:
    """Queue the fetch; the Resynchronizer applies the records when Salesforce answers."""
    for client_id in cmd.client_ids:
        ctx.batch.request_resync(client_id, cmd.reason)
    return 0


def resync_all_clients(cmd: ResyncAllClients, ctx: HandlerContext) -> int:
    key = f"{cmd.change.transaction_key}:{cmd.change.sequence_number}" if cmd.change else None
    ctx.batch.request_full_resync(cmd.reason, key)
    return 0


HANDLERS: Mapping[type[Command], Handler] = {
    RegisterClient: register_client,
    ChangeClientDetails: change_client_details,
    DeleteClient: delete_client,
    RestoreClient: restore_client,
    MarkClientForResync: mark_client_for_resync,
    ResyncClients: resync_clients,
    ResyncAllClients: resync_all_clients,
}


def to_ref(client_id: str, change: ChangeMetadata) -> ChangeRef:
    # ChangeRef(record_id, transaction_key, sequence_number, commit_timestamp_ms, commit_number, last_modified_ms)
    return new_change_ref(client_id, change.transaction_key, change.sequence_number, change.commit_timestamp_ms,
                          change.commit_number, change.last_modified_ms)


def to_details(data: ClientData) -> ClientDetails:
    values = data.__dict__  # the model's field values as they are: its dump would serialise each (~4 µs a record)
    return ClientDetails(**{name: values[name] for name in _PLAIN_FIELDS},
                         billing_address=to_address(data.billing_address), extra=dict(data.extra))


def to_address(data: AddressData) -> Address:
    return Address(**data.__dict__)


_PLAIN_FIELDS = tuple(name for name in ClientData.model_fields if name not in ("billing_address", "extra"))


def event_metadata(cmd: Command, change: ChangeMetadata | None) -> dict[str, Any]:
    """Every stored event's metadata: correlation (root) and causation (parent) ids, Kafka coordinates,
    Salesforce identity (see docs/architecture.md)."""
    if change is None:
        return {"command": type(cmd).__name__}
    return {  # one literal: built per command (keyword arguments to update() made a second dict)
        "command": type(cmd).__name__,
        "correlation_id": change.correlation_id,
        "causation_id": change.causation_id,
        "source_topic": change.source_topic,
        "source_partition": change.source_partition,
        "source_offset": change.source_offset,
        "replay_id": change.replay_id,
        "transaction_key": change.transaction_key,
        "sequence_number": change.sequence_number,
        "commit_timestamp": change.commit_timestamp_ms,
        "change_origin": change.change_origin,
        "change_type": change.change_type,
        "traceparent": change.traceparent,
    }
