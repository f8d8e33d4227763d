"""Where `worker offsets reset` moves each partition, with the rules of Kafka's own
`kafka-consumer-groups --reset-offsets`: explicit offsets and shifts are clamped into [earliest, end]; a time
with no message at or after it resolves to the end offset."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_SHORT = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd])$")


class NoCommittedOffset(ValueError):
    """A shift was asked for a partition where the group has committed nothing."""


@dataclass(frozen=True)
class ResetSpec:
    kind: str  # earliest | latest | offset | shift | datetime
    value: int = 0  # the offset, the shift, or epoch milliseconds


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    current: int | None
    new: int
    earliest: int
    end: int


def plan(
    spec: ResetSpec,
    current: dict[int, int | None],
    earliest: dict[int, int],
    end: dict[int, int],
    at_time: dict[int, int | None] | None = None,
) -> list[PartitionPlan]:
    rows = []
    for p in sorted(end):
        low, high = earliest[p], end[p]
        now = current.get(p)
        if spec.kind == "earliest":
            target = low
        elif spec.kind == "latest":
            target = high
        elif spec.kind == "offset":
            target = spec.value
        elif spec.kind == "shift":
            if now is None:  # as Kafka's tool: a shift needs a starting point
                raise NoCommittedOffset(
                    f"cannot shift partition {p}: the group has no committed offset there "
                    "(leave it out with --partitions, or use --to-offset / --to-earliest)"
                )
            target = now + spec.value
        elif spec.kind == "datetime":
            found = (at_time or {}).get(p)
            target = found if found is not None else high
        else:
            raise ValueError(f"unknown reset kind {spec.kind!r}")
        rows.append(PartitionPlan(p, now, min(max(target, low), high), low, high))
    return rows


def parse_duration(text: str) -> timedelta:
    """ISO-8601 (`PT1H30M`, `P1D`) or short (`90s`, `30m`, `2h`, `1d`) durations."""
    short = _SHORT.match(text.strip())
    if short:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[short["unit"]]
        return timedelta(**{unit: float(short["n"])})
    match = _DURATION.match(text.strip().upper())
    if not match or not any(match.groupdict().values()):
        raise ValueError(f"not a duration: {text!r} (use e.g. PT1H, P1D, 30m)")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return timedelta(days=parts.get("d", 0), hours=parts.get("h", 0), minutes=parts.get("m", 0),
                     seconds=parts.get("s", 0))


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 instant (naive = UTC), or a duration meaning that long ago."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            return (now or datetime.now(UTC)) - parse_duration(text)
        except ValueError:
            hint = "ISO-8601 like 2026-11-24T10:00:00Z, or a duration like 1h"
            raise ValueError(f"not a time: {text!r} ({hint})") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
