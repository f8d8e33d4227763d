"""How migration 007 stores events: the metadata a batch's events share once per batch (`event_batches`), an
event's own fields less what its other fields already say, the payload's change reference as a positional array.
`compact_*` write that form; `expand_payload` and `full_metadata` (and `event_payload()` / `event_metadata()` in
SQL) give every field back."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from operator import itemgetter
from typing import Any

from worker.application.ports import StoredEvent

# code -> (metadata key, the key of the payload's `change` holding the same value); see migration 007
_FROM_CHANGE = (("t", "transaction_key", "transaction_key"), ("s", "sequence_number", "sequence_number"),
                ("T", "commit_timestamp", "commit_timestamp_ms"))


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def compact_metadata(events: Sequence[StoredEvent]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Split the batch's metadata as migration 007 stores it: the fields every event shares (stored once, in
    `event_batches`) and each event's own fields, less what its other fields already say ("~" lists those codes;
    `event_metadata()` in SQL and `full_metadata` put them back). The event id is a column of its own."""
    metas = [e.metadata for e in events]
    shared = _common(metas, ())
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for event, meta in zip(events, metas, strict=True):
        by_type.setdefault(event.event_type, []).append(meta)
    per_type = {t: common for t, group in by_type.items() if (common := _common(group, shared))}
    # per event type, every key its rows leave out (one set test per key, not three)
    left_out = {t: {"event_id", *shared, *per_type.get(t, ())} for t in by_type}
    rows = []
    for event, meta in zip(events, metas, strict=True):
        drop = left_out[event.event_type]
        own = {k: v for k, v in meta.items() if k not in drop}
        codes = ""
        change = event.payload.get("change")
        if type(change) is dict or isinstance(change, Mapping):  # (the ABC's check is slow: a dict, most often)
            # `_FROM_CHANGE` unrolled, `_same` inline: what the payload's change says in the same type is not kept
            if "transaction_key" in own and "transaction_key" in change:
                a, b = own["transaction_key"], change["transaction_key"]
                if type(a) is type(b) and a == b:
                    del own["transaction_key"]
                    codes += "t"
            if "sequence_number" in own and "sequence_number" in change:
                a, b = own["sequence_number"], change["sequence_number"]
                if type(a) is type(b) and a == b:
                    del own["sequence_number"]
                    codes += "s"
            if "commit_timestamp" in own and "commit_timestamp_ms" in change:
                a, b = own["commit_timestamp"], change["commit_timestamp_ms"]
                if type(a) is type(b) and a == b:
                    del own["commit_timestamp"]
                    codes += "T"
        if "correlation_id" in own:
            a, b = own["correlation_id"], meta.get("transaction_key")
            if isinstance(b, str) and type(a) is type(b) and a == b:
                del own["correlation_id"]
                codes += "c"
        if "causation_id" in own:
            topic, partition, offset = meta.get("source_topic"), meta.get("source_partition"), meta.get("source_offset")
            if (isinstance(topic, str) and type(partition) is int and type(offset) is int
                    and own["causation_id"] == f"{topic}:{partition}:{offset}"):
                del own["causation_id"]
                codes += "k"
        if codes:
            own["~"] = codes
        rows.append(own)
    if per_type:
        shared["~types"] = per_type
    return shared, rows


_ABSENT = object()


def _common(metas: Sequence[Mapping[str, Any]], besides: Collection[str]) -> dict[str, Any]:
    """The fields (but the event id and those in ``besides``) every one of ``metas`` has with the same value
    (`_same`, inline: a call per comparison was most of the cost; most fields differ by the second event)."""
    first, rest = metas[0], metas[1:]
    common = {}
    for key, value in first.items():
        if key == "event_id" or key in besides:
            continue
        kind = type(value)
        for meta in rest:
            other = meta.get(key, _ABSENT)
            if type(other) is not kind or other != value:
                break
        else:
            common[key] = value
    return common


_CHANGE_KEYS = ("commit_number", "sequence_number", "transaction_key", "last_modified_ms", "commit_timestamp_ms")
_CHANGE_SET = {"record_id", *_CHANGE_KEYS}
_change_values = itemgetter(*_CHANGE_KEYS)


def compact_payload(stream_id: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The payload as stored: its `change` reference as a positional array under "~c" when the reference names
    the stream's own record (migration 007; `event_payload()` in SQL and `expand_payload` undo it)."""
    change = payload.get("change")
    if type(change) is not dict and not isinstance(change, Mapping):  # (the ABC's check is slow: a dict, most often)
        return payload
    if change.keys() != _CHANGE_SET or change["record_id"] != stream_id:
        return payload
    stored = {"~c": list(_change_values(change))}  # the values in `_CHANGE_KEYS`' order, taken in C
    stored.update(payload)  # the payload's keys in their order after "~c" (a dict copy in C), less `change`
    del stored["change"]
    return stored


def expand_payload(stream_id: str, stored: Any) -> Any:
    if not isinstance(stored, dict) or "~c" not in stored:
        return stored
    payload = {k: v for k, v in stored.items() if k != "~c"}
    payload["change"] = {"record_id": stream_id, **dict(zip(_CHANGE_KEYS, stored["~c"], strict=True))}
    return payload


def full_metadata(shared: Mapping[str, Any] | None, own: Mapping[str, Any], event_id: str, event_type: str,
                  payload: Mapping[str, Any]) -> dict[str, Any]:
    """`event_metadata()` of migration 007 in Python: the whole metadata of a stored event (``payload`` whole)."""
    types = (shared or {}).get("~types", {})
    meta = {**{k: v for k, v in (shared or {}).items() if k != "~types"}, **types.get(event_type, {}),
            **{k: v for k, v in own.items() if k != "~"}}
    codes = own.get("~", "")
    if codes:
        change = payload.get("change") or {}
        for code, key, source in _FROM_CHANGE:
            if code in codes:
                meta[key] = change.get(source)
        if "c" in codes:
            meta["correlation_id"] = meta.get("transaction_key")
        if "k" in codes:
            meta["causation_id"] = (f"{meta.get('source_topic')}:{meta.get('source_partition')}:"
                                    f"{meta.get('source_offset')}")
    meta["event_id"] = event_id
    return meta
