"""Fuzz of the decode-and-store path: real CDC samples with a value replaced by NaN, ±Infinity, 2**70, a NUL, a
wrong type or an over-long text, a key dropped or a hostile one added, through parse, translate, command
validation, the aggregate and the JSON the event store writes (checked as PostgreSQL's jsonb would). The only
acceptable outcomes: applied (or skipped), or dead-lettered with a typed reason; never an untyped exception,
never a value the store refuses.

`make fuzz` runs FUZZ_EXAMPLES (100 000) cases and prints the count of each outcome; `make test` runs a few
hundred (derandomized under the hypothesis "ci" profile)."""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pydantic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cdc_factory import CdcFactory
from tests.unit.roles.ingest_kit import MemoryStore, Message, messages, processor
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.application.errors import InvalidCommand
from worker.application.validation import UntranslatableChange
from worker.domain.errors import DomainError

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
TYPED = (ChangeEventParseError, pydantic.ValidationError, InvalidCommand, UntranslatableChange, DomainError)
A = "001000000000001AAA"

HOSTILE: list[Any] = [
    float("nan"), float("inf"), float("-inf"), 2**70, -(2**70), 2**63, 10**30, "\u0000", "a\u0000b", "many",
    "", " ", [], {}, [1, [2]], {"a": float("nan")}, {"k\u0000": 1}, True, False, 1.5, -1, 0, None,
    "x" * 200_000, "2023-01-01T00:00:00Z", "001*", "000000000000000AAA", "UPDATE", "GAP_UPDATE", ["Name"],
    # unpaired surrogates: JSON writes them as "\\ud800" escapes, valid JSON that decodes to text with no UTF-8 form
    "\ud800", "caf\u00e9\udfff", {"k\udc80": 1}, ["\ud83d"],
]


# Kafka headers a producer may set on a change: a trace parent that is not UTF-8 stopped the worker once
HOSTILE_HEADERS: list[list[tuple[str, bytes | None]]] = [
    [], [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")], [("traceparent", b"\xff\xfe")],
    [("traceparent", None)], [("traceparent", b"")], [("traceparent", b"\x00")], [("schema_id", b"\xff")],
    [("replay_id", b"\xc3\x28"), ("event_id", b"\x00")], [("traceparent", b"x" * 200_000)],
]


def _bases() -> list[dict[str, Any]]:
    docs = [json.loads(path.read_text()) for path in sorted(SAMPLES.glob("*.json"))]
    f = CdcFactory(start_ms=1_750_000_000_000)
    made = [f.create(A, Industry="Energy", Custom__c={"x": 1}), f.update(A, Phone="1", nulled=("Industry",)),
            f.update([A, "001000000000002AAA"], Name="Merged"), f.delete(A), f.undelete(A), f.gap([A])]
    return docs + [json.loads(value) for _, value in made]


BASES = _bases()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += [(*prefix, key), *_paths(inner, (*prefix, key))]
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += [(*prefix, index), *_paths(inner, (*prefix, index))]
    return found


PATHS = [_paths(doc) for doc in BASES]


def _record_ids(doc: dict[str, Any]) -> list[str]:
    payload = doc.get("payload", doc)
    return list(payload["ChangeEventHeader"]["recordIds"])


def hostile(draw: Any) -> Any:
    return copy.deepcopy(draw(st.sampled_from(HOSTILE)))  # never the shared object: a later mutation edits it


@st.composite
def hostile_messages(draw: Any) -> tuple[int, bytes, list[tuple[str, bytes | None]]]:
    index = draw(st.integers(0, len(BASES) - 1))
    doc = copy.deepcopy(BASES[index])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS[index]))
        parent: Any = doc
        try:
            for step in path[:-1]:
                parent = parent[step]
            kind = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
            if kind == "drop":
                del parent[path[-1]]
            elif kind == "add" and isinstance(parent, dict):
                names = ["Evil__c", "Evil\u0000__c", "Evil\ud800__c", "Name", "BillingAddress"]
                parent[draw(st.sampled_from(names))] = hostile(draw)
            else:
                parent[path[-1]] = hostile(draw)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced this path
    return index, json.dumps(doc).encode(), draw(st.sampled_from(HOSTILE_HEADERS))


def run_one(index: int, value: bytes, headers: list[tuple[str, bytes | None]] | None = None) -> str:
    """The batch [a CREATE of each record, the hostile message]; returns the hostile message's outcome."""
    seed = CdcFactory(start_ms=1_000_000_000_000)
    creates = [seed.create(cid, Type=None, Active__c=None) for cid in dict.fromkeys(_record_ids(BASES[index]))]
    store = MemoryStore()  # refuses what jsonb refuses: the value rules must have refused it first
    batch = [*messages(*creates), Message(value, len(creates), b"k", headers=headers)]
    outcome = processor(store).process(batch)
    hostile = len(creates)
    for letter in outcome.dead_letters:
        assert isinstance(letter.error, TYPED), f"untyped dead letter: {letter.error!r}"
        assert letter.message.offset() == hostile, f"a seed CREATE was dead-lettered: {letter.error}"
        assert letter.resync, "a dead letter says which clients it marked for resync, or why none"
    letters = [letter for letter in outcome.dead_letters if letter.message.offset() == hostile]
    if letters:
        return f"dead-lettered {letters[0].stage} {type(letters[0].error).__name__}"
    return "skipped" if outcome.skipped else "applied"


def test_every_mutated_cdc_message_is_applied_or_dead_lettered_with_a_typed_reason() -> None:
    counts: Counter[str] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile_messages())
    def one(case: tuple[int, bytes, list[tuple[str, bytes | None]]]) -> None:
        counts[run_one(*case)] += 1

    one()
    print(f"\n{sum(counts.values())} cases:")
    for outcome, count in counts.most_common():
        print(f"{count:>8}  {outcome}")
    assert counts["applied"] and any(key.startswith("dead-lettered") for key in counts)


def test_the_unmutated_samples_are_applied() -> None:
    assert [run_one(index, json.dumps(doc).encode()) for index, doc in enumerate(BASES)] == ["applied"] * len(BASES)
