"""The packed form of a ClientAggregate: its whole state as one bytes object (~0.65 KB for a client of the benchmark,
whose objects take ~2.3 KB), for a cache that keeps many aggregates between batches. `unpack(client_id, pack(a))`
behaves exactly as ``a``: every attribute of the same value and type, the same snapshot, the same decisions.

In-process only: the bytes are a `marshal` image of a flat tuple, whose format belongs to the running interpreter,
so they are never stored or sent (a snapshot is the durable form). The client id is not in them: the holder keys
the bytes by it and hands it back.
"""

from __future__ import annotations

import marshal
from operator import attrgetter
from typing import Any

from worker.domain.model import ClientAggregate, PositionCode, position_code, position_of
from worker.domain.values import (
    ADDRESS_PARTS,
    PLAIN_ATTRIBUTES,
    Address,
    ClientDetails,
    ClientStatus,
    frozen_constructor,
)

_MARSHAL_VERSION = 4
_STATUSES = tuple(ClientStatus)
_STATUS_INDEX = {status: i for i, status in enumerate(_STATUSES)}
# The attribute paths a field position names most often, written as their index (5 bytes instead of up to 24).
_PATHS = (*PLAIN_ATTRIBUTES, *(f"billing_address.{part}" for part in ADDRESS_PARTS))
_PATH_INDEX = {path: i for i, path in enumerate(_PATHS)}
_plain_values = attrgetter(*PLAIN_ATTRIBUTES)
_address_values = attrgetter(*ADDRESS_PARTS)
_SCALARS = frozenset({str, int, float, bool, type(None)})


def pack(client: ClientAggregate) -> bytes | None:
    """``client``'s state as bytes; None when a value has no exact packed form (a custom field holding anything but
    a plain scalar, a subclass of str or int anywhere): such an aggregate is kept as it is."""
    details = client.details
    if not _SCALARS.issuperset(map(type, details.extra.values())):
        return None  # marshal would write a list's items as they are, but a bytearray as bytes: not exact
    base = _base(client.last_commit_ts_ms)  # field positions are written relative to it: 5 bytes instead of 11
    as_of = client.fields_as_of
    state: tuple[Any, ...] = (
        client.version,
        client.registered,
        client.deleted,
        client.needs_resync,
        _STATUS_INDEX[client.status],
        client.resync_reason,
        client.last_commit_ts_ms,
        client.last_commit_number,
        client.resynced_as_of_ms,
        None if as_of is None else as_of[0] - base,
        None if as_of is None else as_of[1],
        client._recent,  # already compact (model._recent_entry): marshal writes and reads it in C
        None if client._field_positions is None else _positions_form(client._field_positions, base),
        details.extra,
        _plain_values(details),
        _address_values(details.billing_address),
    )
    try:
        return marshal.dumps(state, _MARSHAL_VERSION)
    except ValueError:
        return None


def unpack(client_id: str, data: bytes) -> ClientAggregate:
    """The aggregate ``data`` (from `pack`) holds, as ``client_id``."""
    (version, registered, deleted, needs_resync, status, reason, last_ts, last_number, resynced, as_of_ts,
     as_of_number, recent, positions, extra, plain, address) = marshal.loads(data)
    base = _base(last_ts)
    client: ClientAggregate = object.__new__(ClientAggregate)
    client.client_id = client_id
    client.version = version
    client.registered = registered
    client.deleted = deleted
    client.needs_resync = needs_resync
    client.status = _STATUSES[status]
    client.resync_reason = reason
    client.last_commit_ts_ms = last_ts
    client.last_commit_number = last_number
    client.resynced_as_of_ms = resynced
    client.fields_as_of = None if as_of_ts is None else (as_of_ts + base, as_of_number)
    client._recent = recent
    client._field_positions = None if positions is None else _positions(positions, base)
    client.details = _new_details(*plain, _new_address(*address), extra)
    return client


def _base(last_commit_ts_ms: int | None) -> int:
    """An int, so that ``(ts - base) + base`` gives ``ts`` back exactly (positions are ints)."""
    return last_commit_ts_ms if type(last_commit_ts_ms) is int else 0


def _positions_form(positions: dict[str, PositionCode], base: int) -> tuple[Any, ...]:
    """(path or its index, timestamp - base, commit number) per position, flat."""
    flat: list[Any] = []
    for path, code in positions.items():
        ts, number = position_of(code)
        flat += (_PATH_INDEX.get(path, path), ts - base, number)
    return tuple(flat)


def _positions(form: tuple[Any, ...], base: int) -> dict[str, PositionCode]:
    """The field positions back, each distinct position one code shared by its paths, as `apply` leaves them (a
    full record sent as a change sets some twenty paths at one position: ~2.5 KB as separate tuples and ints)."""
    positions: dict[str, PositionCode] = {}
    made: dict[tuple[int, Any], PositionCode] = {}
    for i in range(0, len(form), 3):
        path = form[i]
        key = (form[i + 1], form[i + 2])
        position = made.get(key)
        if position is None:
            position = made[key] = position_code((key[0] + base, key[1]))
        positions[_PATHS[path] if type(path) is int else path] = position
    return positions


_new_details = frozen_constructor(ClientDetails)
_new_address = frozen_constructor(Address)
